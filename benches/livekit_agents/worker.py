"""A LiveKit Agents (Python) worker that is the counterpart of `voicebackend agent --worker` with
the test providers, for scripts/bench-livekit-agents.sh.

What each part mirrors (tests/support/providers.rs, src/bin/voicebackend/agent.rs):

- STT: `PitchSTT`, non-streaming (LiveKit Agents wraps it in its `StreamAdapter`, which cuts
  turns with the VAD and calls `recognize` on each one): the transcript is
  "pitch <hz> hz for <ms> ms", the fundamental of the loudest 200 ms by autocorrelation, as
  `test-pitch-stt` computes it.
- LLM: `EchoLLM` answers "You said: <transcript>." in one chunk (the CLI worker's rule agent
  answers the bench's transcripts that way).
- TTS: `ToneTTS`, non-streaming, a 440 Hz sine at 24 kHz, 20 ms of tone per character of text,
  amplitude 8000, as `test-tone-tts` (so the agent publishes the same amount of audio).
- VAD and end of turn: turn_detection "vad" (no end-of-turn model), 500 ms of silence
  (`endpointing.min_delay` 0.5 and the VAD's `min_silence_duration` 0.5). The VAD is chosen with
  LKA_VAD: `silero` (default: livekit-plugins-silero, whose ONNX model ships inside the wheel, on
  onnxruntime), `inference` (livekit-agents' own bundled Silero, livekit-local-inference, the
  framework's default VAD since 1.8) or `energy` (`EnergyVAD` below: an RMS threshold over 20 ms
  frames, the cheapest stand-in for our webrtc-vad detector).

Everything else is LiveKit Agents' defaults: an `AgentServer` with its process pool (each job in
its own process; `start` mode: num_idle_processes = CPU count, load_threshold 0.7 of the cgroup's
CPU), `AgentSession` with its room input/output (Opus through the `livekit` rtc wheel).
Interruptions stay enabled (adaptive interruption is off by default in production mode).
LKA_DEBUG=1 logs each transcript, reply and state change (as warnings). LKA_LOAD_THRESHOLD
overrides load_threshold (at most 1.0 in production mode); LKA_LOAD=tree
replaces the default load function (the cgroup's CPU) with this worker's own process tree's CPU,
which is what our worker reports (its process's CPU).

Run: python -m livekit.agents start benches/livekit_agents/worker.py --url ws://… --api-key …
--api-secret … (LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET also work).
"""

from __future__ import annotations

import os
import time

import numpy as np

from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectOptions,
    Agent,
    AgentServer,
    AgentSession,
    JobContext,
    JobProcess,
    llm,
    stt,
    tts,
    utils,
    vad,
)
from livekit.agents.types import NOT_GIVEN, NotGivenOr

TONE_RATE = 24000
MS_PER_CHAR = 20
SILENCE_S = 0.5


def pitch_hz(audio: np.ndarray, rate: int) -> int:
    """The fundamental of the loudest 200 ms by autocorrelation, rounded to 10 Hz (80-400 Hz):
    the same steps as `test-pitch-stt` (numpy instead of loops)."""
    x = audio.astype(np.float64)
    window = min(rate // 5, len(x))
    if window < 2:
        return 0
    step = max(window // 4, 1)
    starts = range(0, len(x) - window + 1, step)
    start = max(starts, key=lambda s: float(np.dot(x[s : s + window], x[s : s + window])))
    w = x[start : start + window]
    min_lag, max_lag = rate // 400, min(rate // 80, len(w) - 1)
    if max_lag < min_lag:
        return 0
    corr = np.array([np.dot(w[: len(w) - lag], w[lag:]) for lag in range(min_lag, max_lag + 1)])
    strongest = max(corr.max(), 0.0)
    candidates = np.nonzero(corr >= 0.9 * strongest)[0]
    best = int(candidates[0]) if len(candidates) else 0
    while best + 1 < len(corr) and corr[best + 1] > corr[best]:
        best += 1
    hz = rate / max(best + min_lag, 1)
    return int(round(hz / 10.0) * 10)


class PitchSTT(stt.STT):
    def __init__(self) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        frame = rtc.combine_audio_frames(buffer)
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1)
        rate = frame.sample_rate
        text = f"pitch {pitch_hz(pcm, rate)} hz for {len(pcm) * 1000 // rate} ms"
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language="en", text=text)],
        )


class EchoLLM(llm.LLM):
    """Answers the last user message back, in one chunk."""

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return EchoStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class EchoStream(llm.LLMStream):
    async def _run(self) -> None:
        said = ""
        for item in reversed(self.chat_ctx.items):
            if getattr(item, "type", None) == "message" and item.role == "user":
                said = item.text_content or ""
                break
        said = said.strip().rstrip(".!?")
        reply = f"You said: {said}." if said else "Sorry, I did not catch that."
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id=utils.shortuuid(), delta=llm.ChoiceDelta(role="assistant", content=reply)
            )
        )


class ToneTTS(tts.TTS):
    def __init__(self) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=TONE_RATE,
            num_channels=1,
        )

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return ToneStream(tts=self, input_text=text, conn_options=conn_options)


class ToneStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=TONE_RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        n = len(self.input_text) * MS_PER_CHAR * TONE_RATE // 1000
        t = np.arange(n, dtype=np.float32) / TONE_RATE
        pcm = (np.sin(t * 440.0 * 2 * np.pi) * 8000.0).astype(np.int16)
        chunk = TONE_RATE // 50
        for i in range(0, n, chunk):
            output_emitter.push(pcm[i : i + chunk].tobytes())
        output_emitter.flush()


class EnergyVAD(vad.VAD):
    """Speech = 20 ms frames whose RMS is above -40 dBFS; speech starts after 60 ms of it and
    ends after `min_silence_duration` without it."""

    def __init__(self, *, min_silence_duration: float = SILENCE_S) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=0.02))
        self.min_silence_duration = min_silence_duration

    @property
    def model(self) -> str:
        return "energy"

    @property
    def provider(self) -> str:
        return "bench"

    def stream(self) -> vad.VADStream:
        return EnergyVADStream(self)


class EnergyVADStream(vad.VADStream):
    THRESHOLD = 32768.0 * 10 ** (-40 / 20)
    START_S = 0.06
    PREFIX_S = 0.3

    async def _main_task(self) -> None:
        opts: EnergyVAD = self._vad  # type: ignore[assignment]
        speaking = False
        speech: list[rtc.AudioFrame] = []
        prefix: list[rtc.AudioFrame] = []
        voiced_run = silence = speech_dur = raw_silence = 0.0
        samples_index = 0
        timestamp = 0.0
        async for item in self._input_ch:
            if not isinstance(item, rtc.AudioFrame):
                continue  # a flush sentinel
            frame = item
            pcm = np.frombuffer(frame.data, dtype=np.int16).astype(np.float32)
            dur = frame.samples_per_channel / frame.sample_rate
            samples_index += frame.samples_per_channel
            timestamp += dur
            voiced = pcm.size > 0 and float(np.sqrt(np.mean(pcm * pcm))) >= self.THRESHOLD
            raw_silence = 0.0 if voiced else raw_silence + dur
            if not speaking:
                prefix.append(frame)
                while sum(f.duration for f in prefix) > self.PREFIX_S:
                    prefix.pop(0)
                voiced_run = voiced_run + dur if voiced else 0.0
                if voiced_run >= self.START_S:
                    speaking = True
                    speech = list(prefix)
                    speech_dur = voiced_run
                    silence = 0.0
                    self._send(vad.VADEventType.START_OF_SPEECH, samples_index, timestamp,
                               speech_dur, 0.0, speech, True)
            else:
                speech.append(frame)
                if voiced:
                    silence = 0.0
                    speech_dur += dur
                else:
                    silence += dur
                if silence >= opts.min_silence_duration:
                    speaking = False
                    voiced_run = 0.0
                    self._send(vad.VADEventType.END_OF_SPEECH, samples_index, timestamp,
                               speech_dur, silence, speech, False)
                    speech, prefix = [], []
                    continue
            self._send(vad.VADEventType.INFERENCE_DONE, samples_index, timestamp,
                       speech_dur if speaking else 0.0, silence if speaking else 0.0,
                       [frame], speaking, prob=1.0 if voiced else 0.0,
                       raw_speech=dur if voiced else 0.0, raw_silence=raw_silence)

    def _send(self, kind, samples_index, timestamp, speech_dur, silence_dur, frames, speaking,
              prob=0.0, raw_speech=0.0, raw_silence=0.0) -> None:
        self._event_ch.send_nowait(
            vad.VADEvent(
                type=kind,
                samples_index=samples_index,
                timestamp=timestamp,
                speech_duration=speech_dur,
                silence_duration=silence_dur,
                frames=frames,
                probability=prob,
                inference_duration=0.0,
                speaking=speaking,
                raw_accumulated_speech=raw_speech,
                raw_accumulated_silence=raw_silence,
            )
        )


def make_vad() -> vad.VAD:
    kind = os.environ.get("LKA_VAD", "silero")
    if kind == "silero":
        from livekit.plugins import silero

        return silero.VAD.load(min_silence_duration=SILENCE_S)
    if kind == "inference":
        from livekit.agents import inference

        return inference.VAD(min_silence_duration=SILENCE_S)
    if kind == "energy":
        return EnergyVAD()
    raise SystemExit(f"LKA_VAD={kind}: silero, inference or energy")


class TreeLoad:
    """The worker's own load: CPU time of this process and all its descendants (the job
    processes) over wall time and CPU count, averaged over the last 2.5 s like LiveKit's default
    (which reads the whole cgroup's CPU instead: on a machine shared with the users, the server
    or other work, that is their load too)."""

    def __init__(self) -> None:
        # psutil.Process() on the first call: the module (and so this) is also built in every job
        # process, where it is never called.
        self._me = None
        self._seen: dict[tuple[int, float], float] = {}
        self._last: tuple[float, float] | None = None
        self._samples: list[float] = []

    def _cpu_seconds(self) -> float:
        if self._me is None:
            import psutil

            self._psutil = psutil
            self._me = psutil.Process()
            self._cpus = psutil.cpu_count() or 1
        for p in [self._me, *self._me.children(recursive=True)]:
            try:
                t = p.cpu_times()
                self._seen[(p.pid, p.create_time())] = t.user + t.system
            except self._psutil.Error:
                pass
        # Processes that ended keep their last reading (keyed by PID and start time, so a reused
        # PID is another process), so the sum never goes back.
        return sum(self._seen.values())

    def __call__(self) -> float:
        now = time.monotonic()
        cpu = self._cpu_seconds()
        if self._last is not None and now > self._last[0]:
            self._samples.append((cpu - self._last[1]) / (now - self._last[0]) / self._cpus)
            self._samples = self._samples[-5:]
        self._last = (now, cpu)
        return min(sum(self._samples) / len(self._samples), 1.0) if self._samples else 0.0


def _options() -> dict:
    opts: dict = {}
    if "LKA_LOAD_THRESHOLD" in os.environ:
        opts["load_threshold"] = float(os.environ["LKA_LOAD_THRESHOLD"])
    load = os.environ.get("LKA_LOAD", "default")
    if load == "tree":
        opts["load_fnc"] = TreeLoad()
    elif load != "default":
        raise SystemExit(f"LKA_LOAD={load}: default or tree")
    return opts


server = AgentServer(**_options())


def prewarm(proc: JobProcess) -> None:
    # LiveKit's recommended place for model loading: once per job process, before a job.
    proc.userdata["vad"] = make_vad()


server.setup_fnc = prewarm


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    session = AgentSession(
        stt=PitchSTT(),
        llm=EchoLLM(),
        tts=ToneTTS(),
        vad=ctx.proc.userdata["vad"],
        turn_handling={
            "turn_detection": "vad",
            "endpointing": {"min_delay": SILENCE_S},
        },
    )
    if os.environ.get("LKA_DEBUG"):
        import logging

        log = logging.getLogger("lka-bench")

        @session.on("conversation_item_added")
        def _item(ev) -> None:  # type: ignore[no-untyped-def]
            text = getattr(ev.item, "text_content", None)
            if text is not None:
                log.warning("%s: %s", getattr(ev.item, "role", "?"), text)

        @session.on("user_state_changed")
        def _user(ev) -> None:  # type: ignore[no-untyped-def]
            log.warning("user %s -> %s", ev.old_state, ev.new_state)

        @session.on("agent_state_changed")
        def _agent(ev) -> None:  # type: ignore[no-untyped-def]
            log.warning("agent %s -> %s", ev.old_state, ev.new_state)

    await session.start(agent=Agent(instructions="Echo the user."), room=ctx.room)


if __name__ == "__main__":
    from livekit.agents import cli

    cli.run_app(server)
