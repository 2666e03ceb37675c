"""Measurements for scripts/bench-livekit-agents.sh (standard library only; Linux /proc).

  measure.py tree PID        one JSON line on the process tree under PID (PID and every
                             descendant): cpu_s (utime + stime + cutime + cstime, seconds: the CPU
                             of descendants that ended and were reaped stays counted in their
                             parent's), rss_kb (sum of VmRSS: pages shared between processes
                             counted in each), pss_kb (sum of Pss: shared pages divided among the
                             processes that map them), procs, t (Unix time of the reading)
  measure.py sample WORKER SERVER PEER...
                             one JSON line read at one moment: {t, worker: tree WORKER,
                             server_cpu_s, peers_cpu_s (utime + stime), peers_gone}
  measure.py children PID    PID's children, on one line
  measure.py summarize DIR   reads DIR/trial.json and DIR/peer-*.json, prints the trial's figures
                             as one JSON line (and a readable line on stderr)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int, children: bool = False) -> tuple[int, float] | None:
    """(ppid, cpu seconds) of pid (with its reaped children's if `children`), or None if it has
    gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return int(fields[1]), ticks / TICK


def tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                children.setdefault(st[0], []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _kb(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_figures(root: int) -> dict:
    t = time.time()
    pids = tree(root)
    cpu = sum((_stat(p, children=True) or (0, 0.0))[1] for p in pids)
    return {
        "t": t,
        "cpu_s": round(cpu, 3),
        "rss_kb": sum(_kb(f"/proc/{p}/status", "VmRSS") for p in pids),
        "pss_kb": sum(_kb(f"/proc/{p}/smaps_rollup", "Pss") for p in pids),
        "procs": len(pids),
    }


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[round((len(values) - 1) * p)])


def summarize(d: Path) -> dict:
    trial = json.loads((d / "trial.json").read_text())
    n = trial["rooms"]
    latencies: list[float] = []
    judged = answered = 0
    rooms_without_agent = rooms_late = 0
    peers_failed = 0
    missed_rooms: set[str] = set()
    for i in range(n):
        path = d / f"peer-{i}.json"
        if not path.exists():
            peers_failed += 1
            continue
        r = json.loads(path.read_text())
        tracks = r.get("published_tracks") or []
        subscribed = [t["first_subscribed_ms"] for t in tracks if t.get("first_subscribed_ms")]
        if not subscribed:
            rooms_without_agent += 1
            continue
        if (r["join_started_unix_ms"] + min(subscribed)) / 1000 > trial["sample0"]["t"]:
            rooms_late += 1
        audible = sorted(r.get("audible") or [], key=lambda s: s["start_ms"])
        utts = sorted(r.get("utterances") or [], key=lambda u: u["start_ms"])
        left = r.get("left_ms") or 0
        for k, u in enumerate(utts):
            if not u.get("frames"):
                continue  # never spoken (the peer ended first)
            end = u["start_ms"] + u["audio_ms"]
            nxt = utts[k + 1]["start_ms"] if k + 1 < len(utts) else left
            if end + trial["judge_ms"] > left:
                continue  # the peer left too soon after it to tell
            judged += 1
            reply = next((s for s in audible if end < s["start_ms"] <= nxt), None)
            if reply is None:
                missed_rooms.add(r.get("room", str(i)))
                continue
            answered += 1
            latencies.append(reply["start_ms"] - end)
    s0, s1 = trial["sample0"], trial["sample1"]
    window = s1["t"] - s0["t"]
    cpu_pct = (s1["worker"]["cpu_s"] - s0["worker"]["cpu_s"]) / window * 100
    # Per room: per room that had an agent (a worker over its load threshold takes no more).
    served = max(n - rooms_without_agent - peers_failed, 1)
    out = {
        "worker": trial["worker"],
        "rooms": n,
        "vad": trial.get("vad"),
        "load_fnc": trial.get("load_fnc"),
        "utterance": trial.get("utterance"),
        "loadavg_before": trial["loadavg_before"],
        "loadavg_after": trial["loadavg_after"],
        "window_s": round(window, 1),
        "worker_cpu_pct_of_core": round(cpu_pct, 1),
        "rooms_served": served,
        "worker_cpu_pct_per_room": round(cpu_pct / served, 2),
        "rooms_per_2_cores_at_100pct": round(200 / (cpu_pct / served), 1) if cpu_pct > 0 else None,
        "server_cpu_pct": round((s1["server_cpu_s"] - s0["server_cpu_s"]) / window * 100, 1),
        "peers_cpu_pct": round((s1["peers_cpu_s"] - s0["peers_cpu_s"]) / window * 100, 1),
        "idle_rss_mb": round(trial["idle"]["rss_kb"] / 1024, 1),
        "idle_pss_mb": round(trial["idle"]["pss_kb"] / 1024, 1),
        "rss_mb": round(trial["busy"]["rss_kb"] / 1024, 1),
        "pss_mb": round(trial["busy"]["pss_kb"] / 1024, 1),
        "pss_mb_per_room": round((trial["busy"]["pss_kb"] - trial["idle"]["pss_kb"]) / 1024 / served, 1),
        "rss_mb_per_room": round((trial["busy"]["rss_kb"] - trial["idle"]["rss_kb"]) / 1024 / served, 1),
        "procs": trial["busy"]["procs"],
        "peers_gone_before_window_end": s1["peers_gone"],
        "rooms_without_agent": rooms_without_agent,
        "rooms_agent_after_window_start": rooms_late,
        "peers_without_report": peers_failed,
        "utterances_judged": judged,
        "utterances_answered": answered,
        "rooms_with_a_missed_reply": len(missed_rooms),
        "latency_ms_p50": percentile(latencies, 0.5),
        "latency_ms_p95": percentile(latencies, 0.95),
        "latency_ms_max": round(max(latencies)) if latencies else None,
    }
    return out


def main() -> None:
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "tree":
        print(json.dumps(tree_figures(int(sys.argv[2]))))
    elif cmd == "sample":
        worker = tree_figures(int(sys.argv[2]))
        cpu = lambda pids: round(sum((_stat(int(p)) or (0, 0.0))[1] for p in pids), 3)  # noqa: E731
        print(json.dumps({"t": worker["t"], "worker": worker, "server_cpu_s": cpu(sys.argv[3:4]),
                          "peers_cpu_s": cpu(sys.argv[4:]),
                          "peers_gone": sum(_stat(int(p)) is None for p in sys.argv[4:])}))
    elif cmd == "children":
        parent = int(sys.argv[2])
        procs = (int(e) for e in os.listdir("/proc") if e.isdigit())
        print(*(p for p in procs if (_stat(p) or (0, 0.0))[0] == parent))
    elif cmd == "summarize":
        s = summarize(Path(sys.argv[2]))
        print(json.dumps(s))
        print(
            f"{s['worker']:>15} N={s['rooms']:<3} served {s['rooms_served']:<3} CPU {s['worker_cpu_pct_of_core']:5.1f}% of a core"
            f" ({s['worker_cpu_pct_per_room']:.2f}/room), RSS {s['rss_mb']:.0f} MB, PSS {s['pss_mb']:.0f} MB"
            f" ({s['pss_mb_per_room']:.1f}/room), replies {s['utterances_answered']}/"
            f"{s['utterances_judged']}, no agent {s['rooms_without_agent']},"
            f" latency p50/p95 {s['latency_ms_p50']}/{s['latency_ms_p95']} ms,"
            f" load {s['loadavg_before']} -> {s['loadavg_after']}",
            file=sys.stderr,
        )
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
