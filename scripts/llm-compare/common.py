"""Shared bits: model paths, the engine's system prompt, and each model's chat handling."""
import os
import re
from pathlib import Path

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

HOME = Path.home()
MODELS = {
    "smollm2-135m": HOME / ".cache/voicebackend/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3-270m": HOME / ".cache/voicebackend/models/gemma3-270m-it/gemma-3-270m-q4_k_m.gguf",
}
ENGINE_SRC = Path(os.environ.get("ENGINE_SRC", Path(__file__).resolve().parents[2] / "src/provider/llm/mod.rs"))


def system_prompt() -> str:
    """DEFAULT_SYSTEM_PROMPT, read from the engine source so the two never drift."""
    src = ENGINE_SRC.read_text()
    m = re.search(r'pub const DEFAULT_SYSTEM_PROMPT: &str = "(.*?)";', src, re.S)
    # Rust string continuation: backslash-newline plus leading whitespace is dropped.
    return re.sub(r"\\\n\s*", "", m.group(1))


# Gemma 3's chat template (google/gemma-3-*-it tokenizer_config.json), reduced to text
# content: there is no system role, so the system prompt is prepended to the first user
# turn followed by a blank line; the assistant role is called "model". The GGUF we have
# carries no tokenizer.chat_template, so it is supplied here.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def load(name: str, **kw) -> llama_cpp.Llama:
    """Load a model with its own chat template (SmolLM2: the ChatML template in its GGUF)."""
    path = str(MODELS[name])
    if name.startswith("gemma"):
        probe = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        eot = probe.tokenize(b"<end_of_turn>", add_bos=False, special=True)
        assert len(eot) == 1, eot
        fmt = Jinja2ChatFormatter(GEMMA3_TEMPLATE, eos_token="<end_of_turn>", bos_token="<bos>",
                                  stop_token_ids=[eot[0], probe.token_eos()])
        return llama_cpp.Llama(model_path=path, n_ctx=2048, verbose=False,
                               chat_handler=fmt.to_chat_handler(), **kw)
    return llama_cpp.Llama(model_path=path, n_ctx=2048, verbose=False, **kw)


def render(name: str, messages) -> str:
    """The exact prompt text each model sees (for the token-id file and the README)."""
    if name.startswith("gemma"):
        fmt = Jinja2ChatFormatter(GEMMA3_TEMPLATE, eos_token="<end_of_turn>", bos_token="<bos>")
    else:
        probe = llama_cpp.Llama(model_path=str(MODELS[name]), vocab_only=True, verbose=False)
        fmt = Jinja2ChatFormatter(probe.metadata["tokenizer.chat_template"],
                                  eos_token="<|im_end|>", bos_token="<|im_start|>")
    return fmt(messages=messages).prompt
