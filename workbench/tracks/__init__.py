"""Tracks: the parts of the stack a learner can write beyond the GPT (optimizer, data, training loop, engine).

base.py holds the contract every track follows; each track is a subpackage with a light `spec.py` (what the
learner writes, the lessons, the challenges) and a `probes.py` (torch: each function against the reference).
"""
