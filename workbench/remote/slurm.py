"""SLURM's commands as shell lines and their answers parsed: sbatch (job id, or the reason it was rejected, quoted
as SLURM wrote it), squeue (pending/running), scontrol show job and sacct (how a finished job ended), scancel.

The shell lines run through the target's transport (ssh.run_script), on the login node or here for
host = "localhost"; these functions only build and parse text.
"""

import re
import shlex

from workbench.remote.records import RunState

# SLURM job states (squeue %T, scontrol JobState, sacct State) to ours
_STATES = {
    "PENDING": RunState.QUEUED, "CONFIGURING": RunState.QUEUED, "REQUEUED": RunState.QUEUED,
    "REQUEUE_HOLD": RunState.QUEUED, "REQUEUE_FED": RunState.QUEUED, "RESV_DEL_HOLD": RunState.QUEUED,
    "SUSPENDED": RunState.QUEUED, "STOPPED": RunState.QUEUED,
    "RUNNING": RunState.RUNNING, "COMPLETING": RunState.RUNNING, "SIGNALING": RunState.RUNNING,
    "STAGE_OUT": RunState.RUNNING, "RESIZING": RunState.RUNNING,
    "COMPLETED": RunState.DONE,
    "CANCELLED": RunState.CANCELLED, "PREEMPTED": RunState.CANCELLED, "REVOKED": RunState.CANCELLED,
    "FAILED": RunState.FAILED, "TIMEOUT": RunState.FAILED, "NODE_FAIL": RunState.FAILED,
    "OUT_OF_MEMORY": RunState.FAILED, "BOOT_FAIL": RunState.FAILED, "DEADLINE": RunState.FAILED,
}


class SbatchRejected(Exception):
    """sbatch refused the job; str() is SLURM's own reason."""


def submit_command(script_path: str) -> str:
    """From the home directory: the script's relative directives (--output, --chdir) are relative to it."""
    return f"cd \"$HOME\" && sbatch --parsable {shlex.quote(script_path)}"


def parse_submit(returncode: int, stdout: str, stderr: str) -> str:
    """The job id from `sbatch --parsable` (`id` or `id;cluster`), or SbatchRejected quoting SLURM's reason."""
    if returncode == 0:
        first = stdout.strip().splitlines()[0] if stdout.strip() else ""
        job_id = first.split(";")[0].strip()
        if job_id.isdigit():
            return job_id
    errors = [line.split("error:", 1)[1].strip() for line in stderr.splitlines() if "error:" in line]
    failed = [e for e in errors if e.startswith("Batch job submission failed")]
    reason = (failed or errors or [stderr.strip() or stdout.strip() or f"sbatch exited {returncode}"])[-1]
    if failed and len(errors) > 1 and errors[0] != failed[-1]:
        reason = f"{failed[-1]} ({errors[0]})"
    raise SbatchRejected(reason)


def status_command(job_id: str) -> str:
    """One shell line printing the job's state as squeue, scontrol and sacct know it, and squeue's reason for a
    pending job, each behind a marker."""
    j = shlex.quote(job_id)
    return (f"echo SQUEUE $(squeue -h -j {j} -o %T 2>/dev/null); "
            f"echo SCONTROL $(scontrol show job {j} -o 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1); "
            f"echo SACCT $(sacct -n -X -P -j {j} -o State 2>/dev/null | head -n 1); "
            f"echo SREASON $(squeue -h -j {j} -o %r 2>/dev/null)")


def parse_state(text: str) -> RunState | None:
    """The job's state from status_command's output: squeue while it is known there, then scontrol (finished jobs
    stay for MinJobAge), then sacct (when accounting is on). None when SLURM no longer knows the job."""
    found = {}
    for line in text.splitlines():
        marker, _, value = line.partition(" ")
        found[marker] = value.strip()
    candidates = [found.get("SQUEUE", ""), found.get("SCONTROL", "").removeprefix("JobState="), found.get("SACCT", "")]
    for value in candidates:
        word = re.split(r"[\s+]", value.strip())[0] if value.strip() else ""
        if word in _STATES:
            return _STATES[word]
    return None


def cancel_command(job_id: str) -> str:
    return f"scancel {shlex.quote(job_id)}"
