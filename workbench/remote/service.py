"""Launching a run on a target: plan the stages from a preset, sync the project (rsync: only what changed),
make sure it imports on the target (install it there when not), write the job script, submit it (sbatch, or a
detached session over ssh), and record it locally.

    plan = plan_launch(target, stage="base", preset="cpu", model=Path("learner_gpt.py"))
    print(job_script(plan))                      # what --dry-run shows
    record = await launch(plan, progress=print)  # async and UI-free: the CLI and the TUI call the same function

Watching, cancelling and pulling results back are in monitor.py.
"""

import platform
import secrets
import shlex
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from nanochat import presets
from workbench.remote import jobs, slurm
from workbench.remote.jobs import JobPaths, JobSpec, StageCommand, sh_path
from workbench.remote.probe import TargetProbe, probe_target, require_ready
from workbench.remote.records import RunRecord, RunState, new_run_id, save_record
from workbench.remote.ssh import ErrorKind, RemoteError, rsync, run_script
from workbench.remote.targets import Target, TargetKind

# what `launch --stage X` runs, as the preset's stages (those the preset has)
LAUNCH_STAGES = {
    "base": ("data", "tokenizer", "base"),
    "mid": ("mid",),
    "sft": ("sft",),
    "rl": ("rl",),
    "eval": ("tok_eval", "base_loss", "base_eval", "mid_eval", "sft_eval", "rl_eval"),
}
LAUNCH_CHOICES = (*LAUNCH_STAGES, "all")
# never sent to the target: history, caches, build outputs for this machine
SYNC_EXCLUDES = (".git/", "__pycache__/", "*.pyc", ".pytest_cache/", ".hypothesis/", "rustbpe/target/", "*.egg-info/",
                 ".venv/", "build/", "dist/", ".whl/", ".gl/")
PROJECT_ENTRIES = ("pyproject.toml", "README.md", "nanochat", "workbench", "rustbpe", "lessons", "speedrun.sh")
IMPORT_CHECK = "import nanochat.gpt, nanochat.tokenizer, rustbpe._rustbpe, tiktoken, pyarrow"

Progress = Callable[[str], None]


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


@dataclass
class LaunchPlan:
    run_id: str
    target: Target
    launch_stage: str
    preset: str
    stages: list[StageCommand]
    model: Path | None = None          # the learner's file, copied into the run folder
    workdir: str = ""                  # as configured until the target is probed, then absolute
    python: str = "python"

    def spec(self) -> JobSpec:
        return JobSpec(self.run_id, self.target, JobPaths(self.workdir), self.stages, self.python)


def _stage_names(stage: str, preset: str) -> list[str]:
    ran = presets.stages_of(preset)
    wanted = ran if stage == "all" else [s for s in LAUNCH_STAGES[stage] if s in presets.get_preset(preset).stages]
    if not wanted:
        raise presets.PresetError(f"preset {preset!r} runs none of the stages of `--stage {stage}` "
                                  f"({', '.join(LAUNCH_STAGES[stage])})")
    return wanted


def plan_launch(target: Target, *, stage: str, preset: str, model: Path | None = None, depth: int | None = None,
                extra_args: tuple[str, ...] = (), run_id: str | None = None) -> LaunchPlan:
    """The stages and their arguments: the preset's, then --depth, --model and the extra arguments, which go to
    the main stage (base for base/all, else the stage itself; later flags win in the scripts)."""
    run_id = run_id or new_run_id()
    paths = JobPaths(target.workdir.rstrip("/") or "~")
    main = "base" if stage in ("base", "all") else stage
    commands = []
    for name in _stage_names(stage, preset):
        args = list(presets.stage_args(preset, name))
        if name == "base" and depth is not None:
            args.append(f"--depth={depth}")
        if name == "base" and model is not None:
            args.append(f"--model={paths.run(run_id)}/{model.name}")
        if name == main:
            args += list(extra_args)
        commands.append(StageCommand(name, presets.STAGE_MODULES[name], args, name in presets.DISTRIBUTED_STAGES))
    return LaunchPlan(run_id, target, stage, preset, commands, model, paths.workdir)


def job_script(plan: LaunchPlan) -> str:
    spec = plan.spec()
    return jobs.sbatch_script(spec) if plan.target.kind is TargetKind.SLURM else jobs.ssh_job_script(spec)


def _same_platform(probe: TargetProbe) -> bool:
    return probe.platform == f"{platform.system()} {platform.machine()}"


async def sync_project(plan: LaunchPlan, probe: TargetProbe) -> None:
    """rsync the project into <workdir>/code (deleting what was deleted here). The compiled tokenizer goes too
    when the target is the same OS and CPU as this machine; elsewhere it is built there by the install."""
    root = project_root()
    sources = [str(root / entry) for entry in PROJECT_ENTRIES if (root / entry).exists()]
    excludes = SYNC_EXCLUDES + (() if _same_platform(probe) else ("*.so", "*.pyd"))
    await rsync(plan.target, sources, f"{plan.workdir}/code/", excludes=excludes, delete=True)


def install_script(plan: LaunchPlan) -> str:
    """Run with `setup`: use the project from code/ (PYTHONPATH) with the python `setup` gives, or with the
    workdir's own venv once one exists. When it does not import (a missing dependency, no tokenizer built for this
    platform) or the Rust sources are newer than the built tokenizer, `pip install -e` it into <workdir>/venv, a
    venv that sees the packages of `setup`'s environment (torch) but never changes that environment. Prints
    WB_PYTHON <the python the job must use>."""
    code, venv = sh_path(f"{plan.workdir}/code"), sh_path(f"{plan.workdir}/venv")
    py, check = shlex.quote(plan.python), shlex.quote(IMPORT_CHECK)
    setup = plan.target.setup.strip() or ":"
    modules = "".join(f"module load {shlex.quote(m)}\n" for m in plan.target.modules)
    return f"""{{ {setup}
}} || exit 97
{modules}cd {code} || exit 1
export PYTHONPATH={code}
PY={py}
[ -x {venv}/bin/python ] && PY={venv}/bin/python
built=$(ls rustbpe/_rustbpe*.so 2>/dev/null | head -n 1)
stale=yes
[ -n "$built" ] && stale=$(find rustbpe/src rustbpe/Cargo.toml -newer "$built" 2>/dev/null | head -n 1)
if [ -z "$stale" ] && "$PY" -c {check} 2>/dev/null; then echo "WB_PYTHON $PY"; exit 0; fi
echo "WB_INSTALLING"
[ -x {venv}/bin/python ] || {py} -m venv --system-site-packages {venv} 2>&1 | tail -n 3
{venv}/bin/python -m pip install -q -e . 2>&1 | tail -n 20
{venv}/bin/python -c {check} && echo "WB_PYTHON $(cd {venv}/bin && pwd -P)/python"
"""


async def install_project(plan: LaunchPlan, progress: Progress) -> str:
    """The python the job runs with (see install_script)."""
    result = await run_script(plan.target, install_script(plan), timeout=3600)
    if "WB_INSTALLING" in result.stdout:
        progress(f"the project did not import on {plan.target.name}: installed it into {plan.workdir}/venv "
                 f"(pip install -e; builds the tokenizer there)")
    found = [line.split(" ", 1)[1] for line in result.stdout.splitlines() if line.startswith("WB_PYTHON ")]
    if not found:
        last = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
        raise RemoteError(ErrorKind.COMMAND_FAILED, f"the project does not import on {plan.target.name} even after "
                                                    f"pip install -e into {plan.workdir}/venv: {last[0]}")
    return found[-1].strip()


async def _write_job(plan: LaunchPlan) -> None:
    run_dir = plan.spec().paths.run(plan.run_id)
    marker = "WB_JOB_" + secrets.token_hex(6)
    script = (f"mkdir -p {sh_path(run_dir)} && cat > {sh_path(run_dir)}/job.sh <<'{marker}'\n"
              f"{job_script(plan)}{marker}\nchmod +x {sh_path(run_dir)}/job.sh && echo WB_WRITTEN\n")
    result = await run_script(plan.target, script)
    if "WB_WRITTEN" not in result.stdout:
        raise RemoteError(ErrorKind.COMMAND_FAILED, f"could not write the job script in {run_dir}: "
                                                    f"{result.stderr.strip()[-300:]}")
    if plan.model is not None:
        await rsync(plan.target, [str(plan.model)], f"{run_dir}/{plan.model.name}")


async def _submit(plan: LaunchPlan) -> tuple[str | None, int | None]:
    """(SLURM job id, None) or (None, pid of the detached job's process group)."""
    run_dir = plan.spec().paths.run(plan.run_id)
    if plan.target.kind is TargetKind.SLURM:
        result = await run_script(plan.target, slurm.submit_command(f"{run_dir}/job.sh"))
        try:
            return slurm.parse_submit(result.returncode, result.stdout, result.stderr), None
        except slurm.SbatchRejected as e:
            raise RemoteError(ErrorKind.SBATCH_REJECTED, f"sbatch rejected the job: {e}") from None
    result = await run_script(plan.target, jobs.detach_script(run_dir))
    pid = result.stdout.strip().splitlines()[-1:] or [""]
    if result.returncode != 0 or not pid[0].isdigit():
        raise RemoteError(ErrorKind.COMMAND_FAILED, f"could not start the job: {result.stderr.strip()[-300:]}")
    return None, int(pid[0])


async def launch(plan: LaunchPlan, progress: Progress = lambda message: None) -> RunRecord:
    """Probe, sync, install, write, submit, record. Raises RemoteError (one line, with a kind) on the way."""
    target = plan.target
    progress(f"checking {target.name} ({target.kind.value}, {target.host})")
    probe = await probe_target(target)
    require_ready(probe, target)
    plan = replace(plan, workdir=probe.workdir, python=probe.python_cmd or "python")
    progress(f"syncing the project to {target.name}:{plan.workdir}/code (rsync, only what changed)")
    await sync_project(plan, probe)
    plan = replace(plan, python=await install_project(plan, progress))
    await _write_job(plan)
    job_id, pid = await _submit(plan)
    record = RunRecord(
        id=plan.run_id, target=target.name, kind=target.kind.value, stages=[s.stage for s in plan.stages],
        preset=plan.preset, remote_dir=plan.spec().paths.run(plan.run_id), workdir=plan.workdir, started=time.time(),
        state=RunState.QUEUED if job_id else RunState.RUNNING, job_id=job_id, pid=pid,
        model=plan.model.name if plan.model else "reference")
    save_record(record)
    progress(f"submitted run {record.id}: " + (f"SLURM job {job_id}" if job_id else f"process group {pid}")
             + f" in {record.remote_dir}")
    return record
