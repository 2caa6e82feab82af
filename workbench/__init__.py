"""nanochat-workbench: write your own GPT against the nanochat reference, with live checks on every save."""
