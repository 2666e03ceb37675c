"""Write speed/tokens.json: the speed-test prompt as token ids, per model.

The prompt is the engine's system prompt plus one spoken-length caller turn, rendered with
each model's chat template and tokenized by llama.cpp's tokenizer for that GGUF. The ids
only fix the prompt length for candle; the tokenizer does not affect speed.
"""
import json
from pathlib import Path

import llama_cpp
from common import MODELS, render, system_prompt

USER = ("Hi, I'm flying to Tokyo next week and it's a really long flight, "
        "can you recommend a good book I could read on the plane?")

out = {}
for name in MODELS:
    text = render(name, [{"role": "system", "content": system_prompt()},
                         {"role": "user", "content": USER}])
    tok = llama_cpp.Llama(model_path=str(MODELS[name]), vocab_only=True, verbose=False)
    ids = tok.tokenize(text.encode(), add_bos=False, special=True)
    out[name] = ids
    print(f"{name}: {len(ids)} tokens\n{text!r}\n")
Path(__file__).with_name("speed").joinpath("tokens.json").write_text(json.dumps(out))
