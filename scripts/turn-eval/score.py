"""Scores turn-taking decisions on the labeled set, one column per system, as a Markdown table.

Inputs: the set's manifest.json and result files written by benches/turn_eval.rs (the engine)
and pipecat_eval.py (Pipecat), each {"system", "cases": {id: {"speech_started",
"speech_stopped", "interrupted"}}, "cpu"}, times in seconds of audio.

What is counted (clean cases, pink-noise and babble cases at 15 dB SNR in separate rows):
  end-of-turn delay   complete sentences: first turn end at or after the speech's end, minus
                      that end; p50 / p95 ("never" when a turn never ended, counted as infinite)
  early end           complete sentences whose turn ended before the speech did
  pauses cut          pause cases whose turn ended before the sentence did (by pause length)
  trailing-off        turn ended at all, and its delay p50
  false interruptions noise bursts and backchannels that interrupted the agent
                      ("of which before onset": interrupted before the sound began, i.e. by the
                      background noise)
  missed              real interruptions with no interruption from their onset to 0.5 s after
                      their end
  latency p50         interruption time minus the interruption's onset, when caught
  CPU                 as each runner measured it (see its "cpu" section)

Run: python3 scripts/turn-eval/score.py --set target/turn-eval/set \
       target/turn-eval/engine.json target/turn-eval/pipecat.json [--md results.md]
"""

import argparse
import json
import math
from pathlib import Path

TOL = 0.05  # a decision this close before the labeled end counts as at the end


def pct(values, q):
    """Nearest-rank percentile; infinite values (never decided) sort last."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def fmt_s(v):
    if v is None:
        return "–"
    return "never" if math.isinf(v) else f"{v:.2f} s"


def frac(n, d):
    return f"{n}/{d}" if d else "–"


def score(cases, results):
    """Returns {row label: value text} for one system."""
    rows = {}
    groups = [("clean", None), ("pink 15 dB", "pink"), ("babble 15 dB", "babble")]
    for tag, background in groups:
        sel = [c for c in cases if c.get("background") == background]
        res = {c["id"]: results.get(c["id"], {}) for c in sel}

        def stops(c):
            return res[c["id"]].get("speech_stopped", [])

        def ended_early(c):
            return any(c["speech_start"] <= t < c["speech_end"] - TOL for t in stops(c))

        def delay(c):
            after = [t - c["speech_end"] for t in stops(c) if t >= c["speech_end"] - TOL]
            return max(0.0, min(after)) if after else math.inf

        complete = [c for c in sel if c["category"] == "complete"]
        delays = [delay(c) for c in complete]
        rows[f"end-of-turn delay p50 / p95 ({tag})"] = (
            f"{fmt_s(pct(delays, 50))} / {fmt_s(pct(delays, 95))}" if delays else "–"
        )
        rows[f"complete sentences ended early ({tag})"] = frac(
            sum(map(ended_early, complete)), len(complete)
        )
        pauses = [c for c in sel if c["category"] == "pause"]
        parts = []
        for p in (0.6, 0.9, 1.2):
            group = [c for c in pauses if abs(c["pause_s"] - p) < 1e-6]
            parts.append(frac(sum(map(ended_early, group)), len(group)))
        rows[f"pauses cut 0.6 / 0.9 / 1.2 s ({tag})"] = " / ".join(parts)
        rows[f"pauses cut, all ({tag})"] = frac(sum(map(ended_early, pauses)), len(pauses))
        trailing = [c for c in sel if c["category"] == "trailing"]
        if trailing:
            td = [delay(c) for c in trailing]
            ended = sum(not math.isinf(d) for d in td)
            rows[f"trailing-off: ended, delay p50 ({tag})"] = (
                f"{frac(ended, len(td))}, {fmt_s(pct(td, 50))}"
            )

        def interrupted(c, lo, hi):
            return [t for t in res[c["id"]].get("interrupted", []) if lo <= t <= hi]

        false_cases = [c for c in sel if c["category"] in ("noise", "backchannel")]
        for cat in ("noise", "backchannel"):
            group = [c for c in false_cases if c["category"] == cat]
            hit = sum(bool(interrupted(c, 0, math.inf)) for c in group)
            rows[f"false interruptions: {cat} ({tag})"] = frac(hit, len(group))
        hit = [c for c in false_cases if interrupted(c, 0, math.inf)]
        early = [c for c in hit if not interrupted(c, c["speech_start"], math.inf)]
        rows[f"false interruptions, all ({tag})"] = frac(len(hit), len(false_cases)) + (
            f" (of which before onset: {len(early)})" if early else ""
        )
        real = [c for c in sel if c["category"] == "interruption"]
        caught = {c["id"]: interrupted(c, c["speech_start"], c["speech_end"] + 0.5) for c in real}
        before = sum(bool(interrupted(c, 0, c["speech_start"])) for c in real)
        rows[f"missed real interruptions ({tag})"] = frac(
            sum(not v for v in caught.values()), len(real)
        ) + (f" (interrupted before onset: {before})" if before else "")
        lat = [v[0] - c["speech_start"] for c in real if (v := caught[c["id"]])]
        rows[f"interruption latency p50 ({tag})"] = fmt_s(pct(lat, 50))
    return rows


def cpu_text(cpu):
    if not cpu:
        return "–"
    if "rt_us_per_frame" in cpu:
        return f"{cpu['rt_us_per_frame']} µs/frame on the realtime thread ({cpu['core_percent']} % of a core)"
    return (
        f"VAD {cpu['vad_us_per_frame']} µs/frame, turn model {cpu['turn_model_ms_per_call']} ms"
        f" × {cpu['turn_model_calls']} ({cpu['core_percent']} % of a core)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[2]
    parser.add_argument("--set", default=root / "target/turn-eval/set", type=Path)
    parser.add_argument("--md", type=Path, help="also write the table to this file")
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    cases = json.loads((args.set / "manifest.json").read_text())["cases"]
    columns = []
    for path in args.results:
        r = json.loads(path.read_text())
        rows = score(cases, r["cases"])
        rows["CPU per frame"] = cpu_text(r.get("cpu"))
        columns.append((f"{r['system']} [{path.stem}]", rows))
    labels = list(columns[0][1])
    lines = [
        f"Set: {args.set} ({len(cases)} cases)",
        "",
        "| | " + " | ".join(name for name, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    lines += [f"| {k} | " + " | ".join(rows.get(k, "–") for _, rows in columns) + " |" for k in labels]
    text = "\n".join(lines)
    print(text)
    if args.md:
        args.md.write_text(text + "\n")


if __name__ == "__main__":
    main()
