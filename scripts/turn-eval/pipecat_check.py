"""Checks pipecat_eval.py's re-enactment against a real Pipecat 1.14 pipeline, in real time.

A PipelineWorker holds Pipecat's own LLMUserAggregator (SileroVADAnalyzer as its vad_analyzer,
default user turn strategies, realtime_service_mode so that no STT transcript is awaited, as in
pipecat_eval.py) and a recorder after it. Each case's user track is queued in 20 ms frames at
real-time pace; the recorder notes when UserStartedSpeakingFrame (turn start: the interruption
moment) and UserStoppedSpeakingFrame (turn end) pass, in seconds since the first frame. Those
times are printed beside pipecat_eval.py's for the same cases (wall clock here, so a loaded
machine adds its delays).

Run: /root/.cache/voicebackend/venv/bin/python scripts/turn-eval/pipecat_check.py \
       [--set target/turn-eval/set] [--eval target/turn-eval/pipecat.json] [--cases REGEX]
"""

import argparse
import asyncio
import json
import re
import time
import wave
from pathlib import Path

import numpy as np
from loguru import logger

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    EndFrame,
    InputAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

RATE = 16000
FRAME = RATE // 50


class Recorder(FrameProcessor):
    """Notes the time of the user turn frames that pass."""

    def __init__(self):
        super().__init__()
        self.t0 = None
        self.seen = {"speech_started": [], "speech_stopped": []}

    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if self.t0 is not None:
            t = round(time.monotonic() - self.t0, 3)
            if isinstance(frame, UserStartedSpeakingFrame):
                self.seen["speech_started"].append(t)
            elif isinstance(frame, UserStoppedSpeakingFrame):
                self.seen["speech_stopped"].append(t)
        await self.push_frame(frame, direction)


async def run_case(path):
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    user, _ = LLMContextAggregatorPair(
        LLMContext(),
        user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()),
        realtime_service_mode=True,
    )
    recorder = Recorder()
    task = PipelineWorker(
        Pipeline([user, recorder]),
        params=PipelineParams(audio_in_sample_rate=RATE),
        enable_rtvi=False,
    )

    async def feed():
        await asyncio.sleep(1.0)  # let the pipeline start
        recorder.t0 = t0 = time.monotonic()
        for i in range(len(pcm) // FRAME):
            frame = pcm[i * FRAME : (i + 1) * FRAME].tobytes()
            await task.queue_frame(InputAudioRawFrame(audio=frame, sample_rate=RATE, num_channels=1))
            await asyncio.sleep(max(0.0, t0 + (i + 1) * FRAME / RATE - time.monotonic()))
        await task.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(task)
    await asyncio.gather(runner.run(), feed())
    return recorder.seen


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[2]
    parser.add_argument("--set", default=root / "target/turn-eval/set", type=Path)
    parser.add_argument("--eval", default=root / "target/turn-eval/pipecat.json", type=Path)
    parser.add_argument("--cases", default=r"^(complete-[0-3]|pause-[0-2]-900|backchannel-[5-7])$")
    args = parser.parse_args()
    logger.remove()
    manifest = json.loads((args.set / "manifest.json").read_text())
    simulated = json.loads(args.eval.read_text())["cases"]
    for case in manifest["cases"]:
        if re.search(args.cases, case["id"]):
            real = await run_case(args.set / f"{case['id']}.wav")
            sim = simulated[case["id"]]
            print(f"{case['id']:16} pipeline {real}  re-enacted "
                  f"{ {k: sim[k] for k in ('speech_started', 'speech_stopped')} }")


if __name__ == "__main__":
    asyncio.run(main())
