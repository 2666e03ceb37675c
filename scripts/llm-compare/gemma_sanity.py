"""Is the Gemma GGUF an instruct model, and is the file sound?

1. Shows how the chat prompt tokenizes (are <start_of_turn>/<end_of_turn> single special
   tokens?) so a template bug can be ruled out.
2. Runs plain text completion (no chat template) on few-shot Q/A prompts: a sound base model
   continues these sensibly even though it does not follow chat turns.
"""
import llama_cpp
from common import MODELS, render, system_prompt

path = str(MODELS["gemma3-270m"])
llm = llama_cpp.Llama(model_path=path, n_ctx=2048, verbose=False)
text = render("gemma3-270m", [{"role": "system", "content": system_prompt()},
                              {"role": "user", "content": "What is the capital of France?"}])
ids = llm.tokenize(text.encode(), add_bos=False, special=True)
print("first ids:", ids[:6], "last ids:", ids[-8:])
print("pieces:", [llm.detokenize([i], special=True).decode(errors="replace") for i in ids[:3]],
      [llm.detokenize([i], special=True).decode(errors="replace") for i in ids[-5:]])
print("metadata has chat_template:", "tokenizer.chat_template" in llm.metadata,
      "| general.name:", llm.metadata.get("general.name"),
      "| general.finetune:", llm.metadata.get("general.finetune"))
FEW = ("Q: What is the capital of Italy?\nA: The capital of Italy is Rome.\n\n"
       "Q: {q}\nA:")
for q in ["What is the capital of France?", "How do I boil an egg?",
          "How many minutes are there in two hours?", "Who wrote Romeo and Juliet?"]:
    r = llm.create_completion(FEW.format(q=q), temperature=0.0, max_tokens=40, stop=["\n\n", "Q:"])
    print(f"[completion] {q} -> {r['choices'][0]['text'].strip()!r}")
