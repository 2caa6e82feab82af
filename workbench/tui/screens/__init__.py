"""The TUI's screens: companion (default), lessons, plot, runs, chat, and the modal dialogs."""
