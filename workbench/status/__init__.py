"""STATUS.md, the learner's notebook: the Markdown editor, the rules that turn a check result into ticks and
milestones, and the notes the TUI writes into it."""
