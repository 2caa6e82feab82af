"""The check engine: the client the TUI and CLI call, the warm worker process, the forked child that runs the
learner's code, and the judge that turns what the child recorded into one typed result."""
