"""The engine track: the learner writes nanochat/engine.py's KV cache, sampling and cached generation."""
