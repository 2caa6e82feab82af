"""The optimizer track: AdamW from the paper (learner_adamw.py) and Muon (learner_muon.py)."""
