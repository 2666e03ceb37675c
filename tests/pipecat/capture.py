"""Records what a Pipecat bot sends a client for one spoken user turn: every RTVI message, as
it came off the socket, one JSON object a line on stdout.

    python tests/pipecat/capture.py URL [--version 2.2.0] [--say TEXT]

The client is what voicebackend's `pipecat` backend is on the wire: Pipecat's protobuf frames
over a WebSocket, `client-ready` with the RTVI protocol `--version` (2.2.0, as the backend
says; a bot's answers to an older client's 1.x can be recorded too), then `--say` spoken by
eSpeak NG as 16-bit PCM at 16 kHz, at real-time pace, and silence until the bot has stopped
speaking. Audio and interruption frames from the bot are summed up on stderr.

The recordings in tests/pipecat/rtvi/ were made with it (see the README there).
"""

import argparse
import asyncio
import json
import subprocess
import sys
import time

import numpy as np
import soxr
import websockets

from pipecat.frames.protobufs import frames_pb2

RATE = 16000
FRAME = RATE // 50  # 20 ms


def speech(text: str) -> bytes:
    """`text` spoken by eSpeak NG, as 16-bit mono PCM at RATE."""
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "--stdout", text], check=True, capture_output=True
    ).stdout
    rate = int.from_bytes(wav[24:28], "little")
    pcm = np.frombuffer(wav[44:], dtype=np.int16)
    return soxr.resample(pcm, rate, RATE).astype(np.int16).tobytes()


def audio_frame(pcm: bytes) -> bytes:
    frame = frames_pb2.Frame()
    frame.audio.audio = pcm
    frame.audio.sample_rate = RATE
    frame.audio.num_channels = 1
    return frame.SerializeToString()


def client_ready(version: str) -> bytes:
    frame = frames_pb2.Frame()
    frame.message.data = json.dumps(
        {
            "label": "rtvi-ai",
            "type": "client-ready",
            "id": "1",
            "data": {"version": version, "about": {"library": "capture.py"}},
        }
    )
    return frame.SerializeToString()


async def capture(url: str, version: str, text: str):
    silence = bytes(FRAME * 2)
    pcm = bytes(RATE) + speech(text) + bytes(RATE * 2)  # 0.5 s before, 1 s after
    done_at = None
    audio_samples = 0
    async with websockets.connect(url) as socket:
        await socket.send(client_ready(version))

        async def send():
            start = time.monotonic()
            sent = 0
            while done_at is None or time.monotonic() < done_at:
                chunk = pcm[sent * FRAME * 2 : (sent + 1) * FRAME * 2] or silence
                await socket.send(audio_frame(chunk.ljust(FRAME * 2, b"\0")))
                sent += 1
                await asyncio.sleep(max(0.0, start + sent * 0.02 - time.monotonic()))

        sender = asyncio.create_task(send())
        deadline = time.monotonic() + 60
        while time.monotonic() < (done_at or deadline):
            try:
                raw = await asyncio.wait_for(socket.recv(), timeout=0.5)
            except asyncio.TimeoutError:
                continue
            frame = frames_pb2.Frame()
            frame.ParseFromString(raw)
            kind = frame.WhichOneof("frame")
            if kind == "message":
                print(frame.message.data, flush=True)
                if json.loads(frame.message.data).get("type") == "bot-stopped-speaking":
                    done_at = time.monotonic() + 1.0
            elif kind == "audio":
                audio_samples += len(frame.audio.audio) // 2
            else:
                print(f"capture: {kind} frame", file=sys.stderr)
        await sender
    print(f"capture: {audio_samples} samples of bot audio", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--version", default="2.2.0")
    parser.add_argument("--say", default="What is the weather like in Paris today?")
    args = parser.parse_args()
    asyncio.run(capture(args.url, args.version, args.say))
