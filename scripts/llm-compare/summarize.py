"""Print the speed tables (markdown) from results/*.jsonl."""
import json
from pathlib import Path

R = Path(__file__).with_name("results")
FILES = [("2 threads, grid (upstream candle models)", "speed.jsonl"),
         ("2 threads, interleaved", "speed_interleaved.jsonl"),
         ("1 thread, interleaved", "speed_interleaved_1thread.jsonl"),
         ("1 thread, re-quantization off", "speed_requant_1thread.jsonl")]
for title, f in FILES:
    p = R / f
    if not p.exists():
        continue
    print(f"\n#### {title} ({f})\n")
    print("| model | candle model | requant | prompt tok | load s | TTFT p50 ms | tok/s p50 | tok/s all | RSS after load MB | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for line in p.read_text().splitlines():
        d = json.loads(line)
        name = "SmolLM2-135M Q4_1" if d["arch"] == "llama" else "Gemma3-270M Q4_K_M"
        print(f"| {name} | {d['arch']} | {'no-SIMD->Q8_0' if d['requant'] else 'as in file'} | "
              f"{d['prompt_tokens']} | {d['load_s']:.2f} | {d['ttft_ms_p50']:.0f} | {d['tok_s_p50']:.1f} | "
              f"{' '.join(f'{x:.1f}' for x in d['tok_s_all'])} | {d['rss_after_load_mb']:.0f} | {d['peak_rss_mb']:.0f} |")
