"""Processes the TUI starts and owns (training runs, the chat model), kept out of the screens that display them."""
