"""Following a run on its target: its state (ssh: the process group and the exit code file; SLURM: squeue,
then scontrol/sacct), the log's tail, new metrics lines, cancel, and pulling the results back.

All functions are async, print nothing and update the run's record, so the CLI (`launch --wait`, `runs`) and the
TUI drive them the same way:

    record = await refresh(record)               # state, stage, exit code, failure message
    lines = await tail_log(record, 20)
    new, offset = await read_metrics(record, offset)
    record = await cancel(record)
    record = await pull_results(record)          # last checkpoint + metrics into $NANOCHAT_BASE_DIR
"""

import asyncio
import json
import time
from pathlib import Path
from typing import Callable

from nanochat.common import get_base_dir
from workbench.remote import slurm
from workbench.remote.jobs import SETUP_FAILED_EXIT, sh_path
from workbench.remote.records import RunRecord, RunState, save_record
from workbench.remote.ssh import ErrorKind, RemoteError, rsync, run_script
from workbench.remote.targets import Target

FAILURE_LOG_LINES = 12


def _status_script(record: RunRecord) -> str:
    d = sh_path(record.remote_dir)
    lines = [f"cd {d} 2>/dev/null || {{ echo WB_GONE; exit 0; }}",
             "echo \"WB_EXIT $(cat exit_code 2>/dev/null)\"",
             "echo \"WB_STAGE $(cat stage 2>/dev/null)\"",
             "[ -f cancelled ] && echo WB_CANCELLED"]
    if record.pid:
        lines.append(f"kill -0 -- -{int(record.pid)} 2>/dev/null && echo WB_ALIVE")
    if record.job_id:
        lines.append(slurm.status_command(record.job_id))
    return "\n".join(lines) + "\n"


def _decide(record: RunRecord, out: dict[str, str], slurm_state: RunState | None) -> RunState:
    """The run's state from what the target reported (fields, never log text)."""
    exit_text = out.get("WB_EXIT", "")
    cancelled = "WB_CANCELLED" in out
    if slurm_state is not None and not slurm_state.finished:
        return slurm_state
    if exit_text.lstrip("-").isdigit():
        code = int(exit_text)
        record.exit_code = code
        if code == 0:
            return RunState.DONE
        return RunState.CANCELLED if cancelled else RunState.FAILED
    if slurm_state is not None:
        return slurm_state
    if "WB_ALIVE" in out:
        return RunState.RUNNING
    return RunState.CANCELLED if cancelled else RunState.FAILED


async def refresh(target: Target, record: RunRecord) -> RunRecord:
    """Ask the target how the run is doing; save and return the updated record. Finished records are left alone."""
    if record.state.finished:
        return record
    result = await run_script(target, _status_script(record), timeout=60)
    out = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key, value.strip())
    if "WB_GONE" in out:
        record.state, record.message = RunState.FAILED, f"the run folder {record.remote_dir} is gone from the target"
    else:
        slurm_state = slurm.parse_state(result.stdout) if record.job_id else None
        record.stage = out.get("WB_STAGE") or record.stage
        record.state = _decide(record, out, slurm_state)
        reason = out.get("SREASON", "")
        record.queue_reason = reason if record.state is RunState.QUEUED and reason not in ("", "None") else None
    if record.state.finished:
        record.ended = record.ended or time.time()
        if record.state is RunState.FAILED and not record.message:
            record.message = await _failure_message(target, record)
    save_record(record)
    return record


async def _failure_message(target: Target, record: RunRecord) -> str:
    tail = "\n".join(await tail_log(target, record, FAILURE_LOG_LINES))
    if record.exit_code == SETUP_FAILED_EXIT:
        head = f"the target's setup line failed on the node ({target.setup!r})"
    elif record.exit_code is not None:
        head = f"the job failed in stage {record.stage or '?'} with exit code {record.exit_code}"
    else:
        head = f"the job stopped without an exit code in stage {record.stage or '?'} (killed, or out of memory)"
    return head + (f"; last log lines:\n{tail}" if tail else "")


async def tail_log(target: Target, record: RunRecord, lines: int = 20) -> list[str]:
    result = await run_script(target, f"tail -n {int(lines)} {sh_path(record.remote_dir)}/log.txt 2>/dev/null",
                              timeout=60)
    return result.stdout.splitlines()


async def read_metrics(target: Target, record: RunRecord, offset: int = 0) -> tuple[list[dict], int]:
    """Complete metrics.jsonl lines written since `offset` (bytes) by this run's training stages, and the new
    offset. The file is the newest metrics.jsonl under the remote checkpoints written since the job started."""
    run_dir = sh_path(record.remote_dir)
    script = (f"cd {sh_path(record.workdir)}/base 2>/dev/null || exit 0\n"
              f"f=$(ls -t $(find . -name metrics.jsonl -newer {run_dir}/started 2>/dev/null) 2>/dev/null | head -n 1)\n"
              f"[ -n \"$f\" ] && tail -c +{int(offset) + 1} \"$f\"\n")
    result = await run_script(target, script, timeout=60)
    data = result.stdout
    complete = data[:data.rfind("\n") + 1] if "\n" in data else ""
    records = []
    for line in complete.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records, offset + len(complete.encode())


async def cancel(target: Target, record: RunRecord) -> RunRecord:
    """scancel the SLURM job, or SIGTERM the detached job's process group (training saves a checkpoint and stops)."""
    if record.state.finished:
        return record
    d = sh_path(record.remote_dir)
    script = f"touch {d}/cancelled\n"
    if record.job_id:
        script += slurm.cancel_command(record.job_id) + "\n"
    elif record.pid:
        script += f"kill -TERM -- -{int(record.pid)} 2>/dev/null || true\n"
    result = await run_script(target, script, timeout=60)
    if result.returncode != 0:
        raise RemoteError(ErrorKind.COMMAND_FAILED, f"cancel failed: {result.stderr.strip()[-300:]}")
    for _ in range(30):  # the job has a moment to save and exit; the state is then read from the target
        record = await refresh(target, record)
        if record.state.finished:
            break
        await asyncio.sleep(1)
    return record


def _checkpoints_script(record: RunRecord) -> str:
    """Checkpoint folders written by this run (files newer than its `started` marker) and the last step it saved in
    each (an earlier run's later steps in the same folder are not this run's)."""
    return (f"cd {sh_path(record.workdir)}/base 2>/dev/null || exit 0\n"
            "for d in *_checkpoints/*/; do\n"
            "  [ -d \"$d\" ] || continue\n"
            f"  [ -n \"$(find \"$d\" -maxdepth 1 -type f -newer {sh_path(record.remote_dir)}/started -print -quit)\" ] "
            "|| continue\n"
            f"  last=$(find \"$d\" -maxdepth 1 -name 'model_*.pt' -newer {sh_path(record.remote_dir)}/started "
            "| sed -n 's/.*model_\\([0-9]*\\)\\.pt$/\\1/p' | sort -n | tail -n 1)\n"
            "  echo \"WB_CKPT $d $last\"\n"
            "done\n")


async def pull_results(target: Target, record: RunRecord, progress: Callable[[str], None] = lambda m: None,
                       local_base: Path | None = None) -> RunRecord:
    """Copy the last checkpoint (model + meta) and metrics.jsonl of every checkpoint folder the run wrote into the
    local $NANOCHAT_BASE_DIR (same relative place, so chat_cli and the Chat screen find them), and the log and
    report into $NANOCHAT_BASE_DIR/remote_runs/<id>/."""
    local = Path(local_base or get_base_dir())
    result = await run_script(target, _checkpoints_script(record), timeout=120)
    pulled = []
    remote_base = f"{record.workdir}/base"
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] != "WB_CKPT":
            continue
        folder = parts[1].rstrip("/")
        names = ["metrics.jsonl"]
        if len(parts) == 3 and parts[2].isdigit():
            names += [f"model_{parts[2]}.pt", f"meta_{parts[2]}.json"]
        dest = local / folder
        dest.mkdir(parents=True, exist_ok=True)
        progress(f"pulling {folder} (step {parts[2] if len(parts) == 3 else '-'}) into {dest}")
        await rsync(target, [f"{remote_base}/{folder}/{n}" for n in names], f"{dest}/", pull=True,
                    extra=["--ignore-missing-args"])
        pulled.append(str(dest))
    run_local = local / "remote_runs" / record.id
    run_local.mkdir(parents=True, exist_ok=True)
    await rsync(target, [f"{record.remote_dir}/log.txt", f"{record.remote_dir}/job.sh", f"{remote_base}/report"],
                f"{run_local}/", pull=True, extra=["--ignore-missing-args"])
    pulled.append(str(run_local))
    record.pulled = pulled
    save_record(record)
    return record


async def wait(target: Target, record: RunRecord, on_update: Callable[[RunRecord, list[dict]], None],
               interval: float = 5.0) -> RunRecord:
    """Poll until the run finishes, calling on_update(record, new metrics lines) each time."""
    offset = 0
    while True:
        record = await refresh(target, record)
        metrics, offset = await read_metrics(target, record, offset)
        on_update(record, metrics)
        if record.state.finished:
            return record
        await asyncio.sleep(interval)
