"""Learning instruments: look inside a model while it runs. Each command runs the model in a process of its own.

    attention.py   `nanochat-workbench attention`: one head's weights as a heatmap, every head's kind
    profile.py     `nanochat-workbench profile`: one training step, module by module (ms, memory, FLOPs)
    compare.py     `nanochat-workbench compare`: the learner's model and the reference trained side by side
    isolate.py     runs an instrument's job in an isolated child; models.py builds the model inside it
    command.py     the options, spinner and failure reporting the commands share
"""
