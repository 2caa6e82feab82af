"""The training track: learner_training.py, the schedule and the optimizer step of nanochat/training.py."""
