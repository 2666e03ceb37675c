"""An independent WebRTC client for `voicebackend serve` (tests/webrtc_aiortc.rs runs it): aiortc
(PyPI `aiortc`, in the test venv made by scripts/setup.sh --tests) posts an offer to
POST /api/offer in Pipecat's SmallWebRTC shape, sends a WAV file over Opus at real-time pace on
its audio line, receives the agent's audio and the RTVI messages on its data channel, and prints
one JSON report on stdout.

    client.py --url http://127.0.0.1:PORT --wav speech.wav [--turns N] [--restart] [--timeout S]
    client.py --url … --wav … --hold S        # connect and stay S seconds (fills a session)
    client.py --url … --wav … --hold S --until-left   # … or until the agent leaves (peerLeft)

Exit status: 0 when the run ended as asked (the report says what happened), 3 when the offer was
refused (the report holds the HTTP status and body), 1 on a timeout or an error.
"""

import argparse
import asyncio
import fractions
import json
import sys
import time
import urllib.error
import urllib.request
import wave

import aioice.ice
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

# Loopback only: aioice gathers every interface's address but 127.0.0.1; this client offers
# 127.0.0.1 alone, so that the whole call stays on the loopback interface.
aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]

RATE = 48000
FRAME = 960  # 20 ms


def read_wav(path):
    """The file as 48 kHz mono int16 (linear interpolation from its rate)."""
    with wave.open(path, "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    assert width == 2, "16-bit WAV expected"
    samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)[:, 0].astype(np.float64)
    n = int(len(samples) * RATE / rate)
    resampled = np.interp(np.arange(n) * rate / RATE, np.arange(len(samples)), samples)
    return resampled.astype(np.int16)


class Speaker(MediaStreamTrack):
    """Plays queued audio at real-time pace, silence in between."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self.queue = np.zeros(0, dtype=np.int16)
        self.pts = 0
        self.start = None

    def say(self, samples):
        self.queue = np.concatenate([self.queue, samples])

    def idle(self):
        return len(self.queue) == 0

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.pts / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        chunk = self.queue[:FRAME]
        self.queue = self.queue[FRAME:]
        if len(chunk) < FRAME:
            chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), dtype=np.int16)])
        frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, RATE)
        self.pts += FRAME
        return frame


class Report:
    def __init__(self):
        self.messages = []
        self.audio_frames = 0
        self.loud_frames = 0
        self.pc_ids = []
        self.restarted = False
        self.left = False
        self.channel_closed = False

    def types(self):
        return [m.get("type") for m in self.messages]

    def finals(self):
        return [m["data"]["text"] for m in self.messages
                if m.get("type") == "user-transcription" and m["data"].get("final")]

    def replies(self):
        return [m["data"]["text"] for m in self.messages if m.get("type") == "bot-output"]

    def json(self):
        return {
            "pc_ids": self.pc_ids,
            "restarted": self.restarted,
            "types": sorted(set(self.types())),
            "transcripts": self.finals(),
            "replies": self.replies(),
            "states": [m["data"]["state"] for m in self.messages
                       if m.get("type") == "server-message"
                       and m["data"].get("type") == "agent-state"],
            "metrics": [m["data"] for m in self.messages if m.get("type") == "metrics"],
            "audio_ms": self.audio_frames * 20,
            "loud_ms": self.loud_frames * 20,
            "left": self.left,
            "channel_closed": self.channel_closed,
        }


def post(url, body):
    """POSTs JSON; (status, parsed body)."""
    request = urllib.request.Request(url + "/api/offer", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


async def connect(url, speaker, report, pc_id=None):
    """A peer connection with the speaker's track and an `rtvi` data channel, offered (as a
    restart of `pc_id` when given); (pc, status, body)."""
    pc = RTCPeerConnection()
    pc.addTrack(speaker)
    channel = pc.createDataChannel("rtvi")
    opened = asyncio.Event()

    @channel.on("open")
    def on_open():
        channel.send(json.dumps({"label": "rtvi-ai", "type": "client-ready", "id": "1",
                                 "data": {"version": "2.2.0"}}))
        opened.set()

    @channel.on("message")
    def on_message(message):
        message = json.loads(message)
        if message.get("type") == "signalling" and message.get("message", {}).get("type") == "peerLeft":
            report.left = True
        else:
            report.messages.append(message)

    @channel.on("close")
    def on_close():
        report.channel_closed = True

    @pc.on("track")
    def on_track(track):
        async def listen():
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                pcm = frame.to_ndarray().astype(np.float64)
                report.audio_frames += 1
                if np.sqrt(np.mean(pcm * pcm)) > 300:
                    report.loud_frames += 1
        asyncio.ensure_future(listen())

    await pc.setLocalDescription(await pc.createOffer())
    offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
    if pc_id:
        offer.update({"pc_id": pc_id, "restart_pc": True})
    status, body = await asyncio.to_thread(post, url, offer)
    if status == 200:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        report.pc_ids.append(body["pc_id"])
        await asyncio.wait_for(opened.wait(), 10)
    return pc, status, body


async def wait_for(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.05)


async def run(args):
    report = Report()
    speech = read_wav(args.wav)
    speaker = Speaker()
    pc, status, body = await connect(args.url, speaker, report)
    if status != 200:
        print(json.dumps({"refused": status, "body": body}))
        return 3
    if args.hold:
        if args.until_left:
            try:
                await wait_for(lambda: report.left and report.channel_closed, args.hold)
            except TimeoutError:
                pass
        else:
            await asyncio.sleep(args.hold)
        await pc.close()
        print(json.dumps(report.json()))
        return 0
    try:
        for turn in range(args.turns):
            speaker.say(speech)
            await wait_for(lambda: len(report.replies()) > turn, args.timeout)
            await wait_for(lambda: report.types()[-1:] != ["bot-started-speaking"]
                           and "bot-stopped-speaking" in report.types(), args.timeout)
        if args.restart:
            # Pipecat's client reconnects this way: a new peer connection, the same pc_id.
            first = report.pc_ids[0]
            await pc.close()
            speaker = Speaker()
            pc, status, body = await connect(args.url, speaker, report, first)
            if status != 200:
                print(json.dumps({"refused": status, "body": body, "restart": True}))
                return 3
            report.restarted = True
            before = len(report.replies())
            speaker.say(speech)
            await wait_for(lambda: len(report.replies()) > before, args.timeout)
        # Let the agent's voice finish arriving.
        await asyncio.sleep(1.5)
    except TimeoutError:
        print(json.dumps({"timeout": True, **report.json()}))
        return 1
    finally:
        await pc.close()
    print(json.dumps(report.json()))
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--wav", required=True)
    parser.add_argument("--turns", type=int, default=1)
    parser.add_argument("--restart", action="store_true")
    parser.add_argument("--hold", type=float, default=0)
    parser.add_argument("--until-left", action="store_true")
    parser.add_argument("--timeout", type=float, default=60)
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
