"""A helper the engine probes share on top of workbench/tracks/outcome.py."""

from workbench.check.result import Component, Status


def with_context(row: Component, context: str) -> Component:
    """An error row says in which situation the learner's code raised; a TODO row stays as it is."""
    if row["status"] == Status.ERROR:
        row["detail"] = f"{context}: {row['detail']}"
    return row
