"""nanochat: a complete, small ChatGPT-style LLM stack (tokenizer, GPT, training, evals, inference)."""
