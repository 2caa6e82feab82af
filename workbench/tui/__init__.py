"""The Textual TUI: the app, its screens and widgets, and the services that own its subprocesses. Never imports
torch."""
