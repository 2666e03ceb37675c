"""Runs Pipecat 1.14's own turn-taking stack on the labeled set and writes its decisions as JSON.

Pipecat's pieces are used as they are: SileroVADAnalyzer (default VADParams: confidence 0.7,
start 0.2 s, stop 0.2 s, min volume 0.6) and LocalSmartTurnAnalyzerV3 (the bundled
smart-turn-v3.2-cpu model, default SmartTurnParams: stop_secs 3). What connects them is
Pipecat 1.14's defaults, re-enacted here frame by frame because a whole pipeline runs on the wall
clock:
  - VADController: a VADUserStartedSpeakingFrame when the analyzer's state becomes SPEAKING, a
    VADUserStoppedSpeakingFrame when it becomes QUIET, queued behind the audio frame that caused
    it (the strategies see that frame with the speaking state from before it).
  - UserTurnStrategies() defaults: start = [VADUserTurnStartStrategy, Transcription...]; stop =
    [TurnAnalyzerUserTurnStopStrategy(LocalSmartTurnAnalyzerV3)]. The user turn starts on VAD
    start (if no turn is open) and, with enable_interruptions (default True), broadcasts an
    interruption: any VAD start while the bot speaks interrupts it. No MinWords strategy and no
    mute strategy are in the defaults.
  - TurnAnalyzerUserTurnStopStrategy: every audio frame goes to append_audio(is_speech = VAD
    speaking); on VAD stop the model runs on the turn's audio; COMPLETE ends the turn, INCOMPLETE
    waits until the analyzer's own 3 s of silence (counted from the VAD stop) forces COMPLETE; a
    new VAD start discards a pending conclusion. No STT runs here, so the strategy is taken with
    wait_for_transcript=False (realtime_service_mode): the turn ends on the model's word, which
    is Pipecat's best case (with an STT it also waits for the final transcript).
  - The controller never ends a turn while the user speaks; its 5 s stop watchdog never fires
    before the 3 s fallback here and is left out.
pipecat_check.py runs a real Pipecat pipeline in real time on a few cases to check this
re-enactment. Frames are 20 ms; time is audio time (the analyzers' time.monotonic() is replaced by the audio
clock). A model run's CPU time is added to the decision's time, since audio keeps arriving while
it runs (CPU time rather than wall time: on a loaded machine the wall time would measure the
load). The bot speaks from t = 0 to the case's agent_end; it stops at the first
interruption.

Output: {"system", "set", "cases": {id: {"speech_started", "speech_stopped", "interrupted"}},
"cpu": {...}} with times in seconds of audio.

Run: /root/.cache/voicebackend/venv/bin/python scripts/turn-eval/pipecat_eval.py \
       [--set target/turn-eval/set] [--out target/turn-eval/pipecat.json]
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

import pipecat
from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.audio.turn.smart_turn import base_smart_turn
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADState

RATE = 16000
FRAME = RATE // 50  # 20 ms


class AudioClock:
    """Stands in for the `time` module inside base_smart_turn: monotonic() is audio time."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def perf_counter(self):
        return time.perf_counter()


CLOCK = AudioClock()
base_smart_turn.time = CLOCK


class Cpu:
    """Process CPU seconds spent in the VAD and in the turn model."""

    def __init__(self):
        self.vad_s = self.turn_s = 0.0
        self.frames = self.turn_calls = 0


async def run_case(path, case, turn, cpu):
    """Feeds one case's user track frame by frame; returns its decisions in audio seconds."""
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    vad = SileroVADAnalyzer(sample_rate=RATE)
    vad.set_sample_rate(RATE)
    turn.clear()
    bot_until = case.get("agent_end", 0.0) if case.get("agent_speaking") else 0.0
    out = {"speech_started": [], "speech_stopped": [], "interrupted": []}
    vad_state = VADState.QUIET
    user_turn = user_speaking = turn_complete = False

    async def analyze(t):
        """The model on the turn's audio; returns (complete, time the answer is known)."""
        c0 = time.process_time()
        state, _ = await turn.analyze_end_of_turn()
        spent = time.process_time() - c0
        cpu.turn_s += spent
        cpu.turn_calls += 1
        return state == EndOfTurnState.COMPLETE, t + spent

    def stop_turn(t):
        nonlocal user_turn, turn_complete
        if user_turn and not user_speaking:
            user_turn = turn_complete = False
            turn.clear()  # TurnAnalyzerUserTurnStopStrategy.handle_user_turn_stopped
            out["speech_stopped"].append(round(t, 3))

    for i in range(len(pcm) // FRAME):
        t = (i + 1) * FRAME / RATE  # the frame has been heard in full
        CLOCK.now = t
        frame = pcm[i * FRAME : (i + 1) * FRAME].tobytes()
        c0 = time.process_time()
        new_state = await vad.analyze_audio(frame)
        cpu.vad_s += time.process_time() - c0
        cpu.frames += 1
        # The audio frame reaches the stop strategy first, with the speaking state from before
        # it: the aggregator queues the VAD frame it caused behind it (_queued_broadcast_frame).
        if turn.append_audio(frame, user_speaking) == EndOfTurnState.COMPLETE:
            _, at = await analyze(t)  # the 3 s fallback: the buffer is already cleared
            turn_complete = True
            stop_turn(at)
        if new_state != vad_state and new_state not in (VADState.STARTING, VADState.STOPPING):
            vad_state = new_state
            if new_state == VADState.SPEAKING:
                user_speaking = True
                if not user_turn:  # UserTurnController._trigger_user_turn_start
                    user_turn = True
                    out["speech_started"].append(round(t, 3))
                    if t < bot_until:  # interruption broadcast while the bot speaks
                        out["interrupted"].append(round(t, 3))
                        bot_until = 0.0
                turn.update_vad_start_secs(vad.params.start_secs)
                turn_complete = False  # a pending conclusion is stale
            else:
                user_speaking = False
                turn_complete, at = await analyze(t)
                if turn_complete:
                    stop_turn(at)
    await vad.cleanup()
    return out


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[2]
    parser.add_argument("--set", default=root / "target/turn-eval/set", type=Path)
    parser.add_argument("--out", default=root / "target/turn-eval/pipecat.json", type=Path)
    parser.add_argument("--cases", default="", help="only the cases whose id matches this regex")
    args = parser.parse_args()
    logger.remove()
    manifest = json.loads((args.set / "manifest.json").read_text())
    turn = LocalSmartTurnAnalyzerV3()
    turn.set_sample_rate(RATE)
    turn._predict_endpoint(np.zeros(RATE, np.float32))  # warm-up: the first run is slow
    cpu, results = Cpu(), {}
    for case in manifest["cases"]:
        if not re.search(args.cases, case["id"]):
            continue
        results[case["id"]] = await run_case(args.set / f"{case['id']}.wav", case, turn, cpu)
    audio_s = cpu.frames * FRAME / RATE
    report = {
        "system": f"Pipecat {pipecat.__version__}: Silero VAD + LocalSmartTurnAnalyzerV3",
        "set": str(args.set),
        "time": "simulated (audio clock), 20 ms frames",
        "cases": results,
        "cpu": {
            "frames": cpu.frames,
            "vad_us_per_frame": round(cpu.vad_s / cpu.frames * 1e6, 1),
            "turn_model_calls": cpu.turn_calls,
            "turn_model_ms_per_call": round(cpu.turn_s / max(cpu.turn_calls, 1) * 1e3, 1),
            "core_percent": round((cpu.vad_s + cpu.turn_s) / audio_s * 100, 3),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"pipecat: {len(results)} cases -> {args.out}; cpu {report['cpu']}")


if __name__ == "__main__":
    asyncio.run(main())
