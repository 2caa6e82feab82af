"""What the learner follows: the phases and methods, the workspace and its templates, hints, lessons, the BPE
exercise check and the forward-pass trace."""
