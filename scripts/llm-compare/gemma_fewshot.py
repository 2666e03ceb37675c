"""Supplementary (not the chat-template test): base Gemma 3 270M through a few-shot
plain-text wrapper, scored with the same fixed checks. Shows what the base checkpoint knows
when it is not asked to follow chat turns. Greedy, max_tokens 64, stops at a blank line.
"""
import json
from checks import QUESTIONS
from common import MODELS, system_prompt
from quality import check, style_ok
import llama_cpp

PREFIX = (system_prompt() + "\n\n"
          "Caller: What is the capital of Italy?\nAssistant: The capital of Italy is Rome.\n\n"
          "Caller: Can you tell me a good film to watch tonight?\n"
          "Assistant: You could watch The Princess Bride, a funny and warm adventure.\n\n")
llm = llama_cpp.Llama(model_path=str(MODELS["gemma3-270m"]), n_ctx=2048, verbose=False)
rows = []
for qid, q, groups, forbid in QUESTIONS:
    r = llm.create_completion(PREFIX + f"Caller: {q}\nAssistant:", temperature=0.0,
                              max_tokens=64, stop=["\n\n", "Caller:"])
    a = r["choices"][0]["text"].strip()
    rows.append(dict(id=qid, a=a, keyword=check(a, groups, forbid), style=style_ok(a)))
    print(f"| {qid} | {a.replace(chr(10), ' ')} | {'PASS' if rows[-1]['keyword'] else 'fail'} | "
          f"{'ok' if rows[-1]['style'] else 'no'} |")
print(f"keyword {sum(r['keyword'] for r in rows)}/{len(rows)}, style {sum(r['style'] for r in rows)}/{len(rows)}")
json.dump(rows, open("results/gemma_fewshot.json", "w"), indent=2, ensure_ascii=False)
