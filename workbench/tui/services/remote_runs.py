"""A training run on a remote target (ssh or SLURM, from targets.toml) started from the Runs screen.

It drives workbench/remote's async, UI-free functions — plan_launch + launch, then monitor.refresh and
monitor.tail_log every POLL_S — in an exclusive app worker (group "remote-run"), and posts what happens to the
app as RemoteProgress messages. The tiny run is the "cpu" preset's base stage (with its data and tokenizer
stages) for the given number of steps; `nanochat-workbench runs` lists and pulls it back like any launch.
"""

import asyncio
from pathlib import Path

from workbench.tui.messages import RemoteProgress

POLL_S = 10.0
PRESET = "cpu"


def target_names() -> tuple[list[str], str | None]:
    """The targets configured in targets.toml, and a one-line problem when the file cannot be read."""
    from workbench.remote.targets import TargetError, load_targets
    try:
        return sorted(load_targets()), None
    except (TargetError, OSError) as e:
        return [], f"targets.toml: {e}"


class RemoteRunService:
    def __init__(self, app):
        self.app = app
        self.record = None  # workbench.remote.records.RunRecord of the run started from here

    def start(self, target_name: str, model: Path | None, steps: int) -> None:
        self.app.run_worker(self._launch(target_name, model, steps), name=f"remote run on {target_name}",
                            group="remote-run", exclusive=True, exit_on_error=False)

    async def _launch(self, target_name: str, model: Path | None, steps: int) -> None:
        from nanochat.presets import PresetError
        from workbench.remote import monitor
        from workbench.remote.service import launch, plan_launch
        from workbench.remote.ssh import RemoteError
        from workbench.remote.targets import TargetError, get_target
        post = self.app.post_message
        try:
            target = get_target(target_name)
            plan = plan_launch(target, stage="base", preset=PRESET, model=model,
                               extra_args=(f"--num_iterations={steps}",))
            record = self.record = await launch(plan, progress=lambda line: post(RemoteProgress(line)))
            post(RemoteProgress(f"launched {record.id} on {target_name}", state=record.state.value))
            previous: list[str] = []
            while not record.state.finished:
                await asyncio.sleep(POLL_S)
                record = self.record = await monitor.refresh(target, record)
                log = await monitor.tail_log(target, record, lines=20)
                for line in [line for line in log if line not in previous]:  # the tail's new lines
                    post(RemoteProgress(line, state=record.state.value))
                previous = log
            post(RemoteProgress(record.message or f"{record.id}: {record.state.value}", state=record.state.value,
                                finished=True))
        except (RemoteError, TargetError, PresetError) as e:
            post(RemoteProgress(str(e), state="failed", finished=True))
