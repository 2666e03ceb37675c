"""Part A: answer quality and tool-call probe, both models, llama-cpp-python, greedy.

usage: python quality.py            -> results/quality.json, results/quality.md (also printed)
Each model answers every question of checks.QUESTIONS in a fresh conversation (system prompt
+ one user turn), then the two-turn follow-up, then two tool-call prompts. temperature 0,
max_tokens 64, n_ctx 2048, each model's own chat template (see common.py).
"""
import json
import re
import time
from pathlib import Path

from checks import FOLLOW_UP, MAX_SENTENCES, QUESTIONS, STYLE_FORBID
from common import MODELS, load, system_prompt

OUT = Path(__file__).with_name("results")
GEN = dict(temperature=0.0, max_tokens=64)


def check(text, groups, forbid):
    ok = all(any(re.search(p, text, re.I) for p in g) for g in groups)
    return ok and not any(re.search(p, text, re.I) for p in forbid)


def style_ok(text):
    if any(re.search(p, text, re.M) for p in STYLE_FORBID):
        return False
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    return 0 < len(sentences) <= MAX_SENTENCES


def chat(llm, messages):
    t = time.perf_counter()
    r = llm.create_chat_completion(messages=messages, **GEN)
    c = r["choices"][0]
    return c["message"]["content"] or "", c["finish_reason"], time.perf_counter() - t


# --- tool-call probe -------------------------------------------------------------------
TOOL = {"name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object",
                       "properties": {"city": {"type": "string", "description": "The city name"}},
                       "required": ["city"]}}
# SmolLM2's format (the system prompt of its tool-calling template, as published with the
# SmolLM2 Instruct models): tools as JSON in <tools>, answer as <tool_call>[{...}]</tool_call>.
SMOL_TOOL_SYSTEM = (
    "You are an expert in composing functions. You are given a question and a set of possible functions.\n"
    "Based on the question, you will need to make one or more function/tool calls to achieve the purpose.\n"
    "If none of the functions can be used, point it out and refuse to answer.\n"
    "If the given question lacks the parameters required by the function, also point it out.\n\n"
    f"You have access to the following tools:\n<tools>{json.dumps([TOOL])}</tools>\n\n"
    "The output MUST strictly adhere to the following format, and NO other text MUST be included.\n"
    "The example format is as follows. Please make sure the parameter type is correct. "
    "If no function call is needed, please make the tool calls an empty list '[]'.\n"
    "<tool_call>[\n{\"name\": \"func_name1\", \"arguments\": {\"argument1\": \"value1\", "
    "\"argument2\": \"value2\"}},\n... (more tool calls as required)\n]</tool_call>"
)
# Gemma's documented prompt-only function calling (ai.google.dev/gemma/docs/capabilities/
# function-calling): Gemma has no tool tokens; the instructions and the function list go in
# the prompt and the call is a Python-like list [func(param=value)].
GEMMA_TOOL_SYSTEM = (
    "You have access to functions. If you decide to invoke any of the function(s),\n"
    " you MUST put it in the format of\n"
    "[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]\n\n"
    "You SHOULD NOT include any other text in the response if you call a function\n"
    f"{json.dumps([TOOL], indent=2)}"
)
TOOL_QUESTION = "What's the weather in Paris?"


def parse_tool(text):
    """Return (format, name, args) for the first parseable call, or None."""
    m = re.search(r"<tool_call>\s*(.*?)\s*</tool_call>", text, re.S)
    if m:
        try:
            calls = json.loads(m.group(1))
            call = calls[0] if isinstance(calls, list) else calls
            return ("smol-json", call.get("name"), call.get("arguments"))
        except Exception:
            pass
    m = re.search(r"\[?\s*(\w+)\(\s*(\w+)\s*=\s*['\"]([^'\"]*)['\"]\s*\)\s*\]?", text)
    if m:
        return ("gemma-pycall", m.group(1), {m.group(2): m.group(3)})
    m = re.search(r"\{.*\}", text, re.S)  # any bare JSON object with a name
    if m:
        try:
            obj = json.loads(m.group(0))
            if "name" in obj:
                return ("bare-json", obj["name"], obj.get("arguments", obj.get("parameters")))
        except Exception:
            pass
    return None


def tool_ok(parsed):
    return bool(parsed and parsed[1] == "get_weather" and isinstance(parsed[2], dict)
                and "paris" in str(parsed[2].get("city", "")).lower())


def main():
    OUT.mkdir(exist_ok=True)
    sysmsg = {"role": "system", "content": system_prompt()}
    results = {}
    for name in MODELS:
        llm = load(name)
        rows = []
        for qid, q, groups, forbid in QUESTIONS:
            a, fin, dt = chat(llm, [sysmsg, {"role": "user", "content": q}])
            rows.append(dict(id=qid, q=q, a=a, finish=fin, secs=round(dt, 2),
                             keyword=check(a, groups, forbid), style=style_ok(a)))
        q1, q2, groups, forbid = FOLLOW_UP
        a1, _, _ = chat(llm, [sysmsg, {"role": "user", "content": q1}])
        a2, fin, dt = chat(llm, [sysmsg, {"role": "user", "content": q1},
                                 {"role": "assistant", "content": a1},
                                 {"role": "user", "content": q2}])
        rows.append(dict(id="followup", q=f"{q1} -> {q2}", a=a2, first=a1, finish=fin,
                         secs=round(dt, 2), keyword=check(a2, groups, forbid), style=style_ok(a2)))
        tools = []
        for fmt, sysp in (("smollm2-format", SMOL_TOOL_SYSTEM), ("gemma-format", GEMMA_TOOL_SYSTEM)):
            a, fin, _ = chat(llm, [{"role": "system", "content": sysp},
                                   {"role": "user", "content": TOOL_QUESTION}])
            p = parse_tool(a)
            tools.append(dict(prompt=fmt, a=a, parsed=p, ok=tool_ok(p)))
        results[name] = dict(answers=rows, tools=tools)
        del llm
    (OUT / "quality.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))

    # Markdown summary
    md = ["| id | " + " | ".join(f"{n} answer | kw | style" for n in MODELS) + " |",
          "|---|" + "---|---|---|" * len(MODELS)]
    ids = [r["id"] for r in results[next(iter(MODELS))]["answers"]]
    for i, qid in enumerate(ids):
        cells = []
        for n in MODELS:
            r = results[n]["answers"][i]
            a = r["a"].replace("\n", " ").replace("|", "/")
            cells += [a, "PASS" if r["keyword"] else "fail", "ok" if r["style"] else "no"]
        md.append(f"| {qid} | " + " | ".join(cells) + " |")
    md.append("")
    for n in MODELS:
        rs = results[n]["answers"]
        md.append(f"**{n}**: keyword {sum(r['keyword'] for r in rs)}/{len(rs)}, "
                  f"style {sum(r['style'] for r in rs)}/{len(rs)}, "
                  f"cut at max_tokens {sum(r['finish'] == 'length' for r in rs)}/{len(rs)}")
    md.append("\n### Tool calls (\"What's the weather in Paris?\")\n")
    for n in MODELS:
        for t in results[n]["tools"]:
            md.append(f"- {n} / {t['prompt']}: parsed={t['parsed']} ok={t['ok']} :: "
                      f"{t['a'][:160]!r}")
    text = "\n".join(md)
    (OUT / "quality.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
