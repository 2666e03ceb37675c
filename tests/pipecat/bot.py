"""A real Pipecat voice bot for the `pipecat` backend's tests, fully offline.

    python tests/pipecat/bot.py PORT [--answer llm|speak] [--raw-text]

Serves one client at a time on ws://127.0.0.1:PORT with Pipecat's
SingleClientWebsocketServerTransport and ProtobufFrameSerializer. On stdout it prints

    READY ws://127.0.0.1:PORT     once it listens
    CONNECTED                     when a client connects
    DISCONNECTED                  when that client leaves

The pipeline (pipecat-ai 1.14.0):

    transport in -> Silero VAD -> Whisper STT (faster-whisper)
        -> EchoResponder (user turns, answer) -> eSpeak NG TTS -> transport out

- Silero VAD: the ONNX model inside the pipecat package.
- Whisper: pipecat's WhisperSTTService on faster-whisper, loading the CTranslate2 model
  directory that scripts/fetch-models.sh installs (whisper-tiny.en), int8 on the CPU.
- EchoResponder ends user turns (Pipecat's UserTurnProcessor: VAD start, speech timeout stop)
  and answers each user turn with "You said: <transcript>" (the transcript with surrounding
  whitespace removed). With `--answer llm` (the default) it stands in for an LLM and streams
  the answer as LLM text (LLMFullResponseStartFrame, an LLMTextFrame per word,
  LLMFullResponseEndFrame); with `--answer speak` the bot has no LLM at all: it pushes a
  TTSSpeakFrame, as a bot that only speaks (a greeting, an IVR prompt, a scripted reply) does.
- EspeakTTSService speaks with the espeak-ng program (Debian's eSpeak NG) at 16 kHz.
- RTVI (added by PipelineWorker): user transcriptions, the bot's text and speaking state reach
  the client as RTVI messages (MessageFrame JSON); interruptions as InterruptionFrame.
  `--raw-text` also turns on the RTVI observer's `llm-raw-text`, `tts-raw-text` and
  `stt-raw-text` messages (off by default in Pipecat; sent to protocol 2.2.0 clients only).

Nothing is downloaded at run time. Environment: VOICEBACKEND_MODELS overrides the model cache
(default ~/.cache/voicebackend/models); VB_BOT_LOG sets the log level (default INFO, on stderr).
"""

import argparse
import asyncio
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from loguru import logger

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection
from pipecat.processors.frameworks.rtvi import RTVIObserverParams
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerParams,
    SingleClientWebsocketServerTransport,
)
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_turn_processor import UserTurnProcessor
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

SAMPLE_RATE = 16000


def reply_to(transcript: str) -> str:
    """The bot's whole "intelligence": the rule the tests' local agent uses too."""
    return f"You said: {transcript.strip()}"


def tokens(text: str) -> list[str]:
    """`text` in the pieces an LLM streams: word by word, each piece with its leading space."""
    words = text.split(" ")
    return words[:1] + [f" {word}" for word in words[1:]]


class EchoResponder(UserTurnProcessor):
    """Decides when user turns start and stop (Silero VAD, then a short speech timeout once a
    transcript is in) and answers each finished turn with `reply_to(transcript)`: as the text
    of a stand-in LLM (`answer` "llm") or as speech alone ("speak"). Transcripts are gathered
    here, in the processor that ends the turn, so that the answer always has the whole turn."""

    def __init__(self, answer: str):
        super().__init__(
            user_turn_strategies=UserTurnStrategies(
                start=[VADUserTurnStartStrategy()],
                stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.3)],
            )
        )
        self._transcript = ""
        self._answer = answer

        @self.event_handler("on_user_turn_started")
        async def on_user_turn_started(_processor, _strategy):
            self._transcript = ""

        @self.event_handler("on_user_turn_stopped")
        async def on_user_turn_stopped(_processor, _strategy):
            transcript, self._transcript = self._transcript, ""
            if not transcript:
                return
            if self._answer == "speak":
                await self.push_frame(TTSSpeakFrame(reply_to(transcript)))
            else:
                await self.push_frame(LLMFullResponseStartFrame())
                for token in tokens(reply_to(transcript)):
                    await self.push_frame(LLMTextFrame(token))
                await self.push_frame(LLMFullResponseEndFrame())

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, TranscriptionFrame) and frame.text.strip():
            # Pieces of one turn (one per stretch of speech), joined as the client joins them.
            self._transcript = f"{self._transcript} {frame.text.strip()}".strip()
        await super().process_frame(frame, direction)


class EspeakTTSService(TTSService):
    """Text to speech with the espeak-ng program (eSpeak NG), resampled to the output rate."""

    def __init__(self, *, voice: str = "en-us", **kwargs):
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model=None, voice=voice, language=None),
            **kwargs,
        )
        self._voice = voice

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str):
        process = await asyncio.create_subprocess_exec(
            "espeak-ng", "-v", self._voice, "--stdout", text,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        wav, err = await process.communicate()
        # espeak-ng writes a 44-byte RIFF header (mono, 16-bit, 22050 Hz) before the samples.
        if process.returncode != 0 or len(wav) < 44 or not wav.startswith(b"RIFF"):
            yield ErrorFrame(error=f"espeak-ng failed ({process.returncode}): {err.decode()}")
            return
        rate = int.from_bytes(wav[24:28], "little")
        pcm = wav[44:]

        async def chunks():
            step = rate // 5 * 2  # 200 ms of 16-bit samples
            for i in range(0, len(pcm), step):
                yield pcm[i : i + step]

        async for frame in self._stream_audio_frames_from_iterator(
            chunks(), in_sample_rate=rate, context_id=context_id
        ):
            await self.stop_ttfb_metrics()
            yield frame


def whisper_model_dir() -> str:
    cache = os.environ.get("VOICEBACKEND_MODELS") or os.path.expanduser(
        "~/.cache/voicebackend/models"
    )
    path = os.path.join(cache, "whisper-tiny.en")
    if not os.path.isfile(os.path.join(path, "model.bin")):
        sys.exit(f"bot: no Whisper model in {path} (run scripts/setup.sh)")
    return path


async def main(port: int, answer: str, raw_text: bool):
    transport = SingleClientWebsocketServerTransport(
        host="127.0.0.1",
        port=port,
        params=SingleClientWebsocketServerParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=SAMPLE_RATE,
            audio_out_sample_rate=SAMPLE_RATE,
            serializer=ProtobufFrameSerializer(),
            allowed_origins=[],
        ),
    )
    stt = WhisperSTTService(
        device="cpu",
        compute_type="int8",
        settings=WhisperSTTService.Settings(model=whisper_model_dir()),
        # Whisper tiny.en on two CPU cores: a transcript within a second of the speech's end.
        ttfs_p99_latency=1.0,
    )
    pipeline = Pipeline(
        [
            transport.input(),
            VADProcessor(vad_analyzer=SileroVADAnalyzer()),
            stt,
            EchoResponder(answer),
            EspeakTTSService(),
            transport.output(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=SAMPLE_RATE, audio_out_sample_rate=SAMPLE_RATE
        ),
        idle_timeout_secs=None,
        rtvi_observer_params=RTVIObserverParams(
            llm_raw_text_enabled=raw_text,
            tts_raw_text_enabled=raw_text,
            stt_raw_text_enabled=raw_text,
        ),
    )

    @transport.event_handler("on_websocket_ready")
    async def on_websocket_ready(_transport):
        print(f"READY ws://127.0.0.1:{port}", flush=True)

    @transport.event_handler("on_client_connected")
    async def on_client_connected(_transport, _websocket):
        print("CONNECTED", flush=True)

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(_transport, _websocket):
        # What the bot was saying belongs to the client that left.
        await worker.queue_frame(InterruptionFrame())
        print("DISCONNECTED", flush=True)

    runner = WorkerRunner(handle_sigint=True)
    await runner.add_workers(worker)
    await runner.run()


def arguments():
    parser = argparse.ArgumentParser(description="A Pipecat bot for voicebackend's tests.")
    parser.add_argument("port", type=int)
    parser.add_argument("--answer", choices=["llm", "speak"], default="llm")
    parser.add_argument("--raw-text", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    args = arguments()
    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("VB_BOT_LOG", "INFO"))
    asyncio.run(main(args.port, args.answer, args.raw_text))
