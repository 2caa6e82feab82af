"""Datasets of conversations for mid-training, SFT, RL and evaluation; see nanochat/tasks/common.py."""
