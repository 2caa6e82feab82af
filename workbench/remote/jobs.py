"""Job scripts for a run on a target: what runs, written out as bash so that it can be read (`launch --dry-run`
prints it) and survives the laptop closing.

On the target, under its workdir:

    code/                 the project, synced with rsync (PYTHONPATH points here)
    base/                 NANOCHAT_BASE_DIR: tokenizer, data shards, <phase>_checkpoints/
    runs/<id>/job.sh      this script; log.txt its output; started touched when it starts; stage the stage now;
              pid         (ssh) the process group of the detached job; exit_code when it ended;
              cancelled   written by a cancel; learner file copied here when the run trains the learner's model

Each stage runs as `python -m <module> <args>`, through torchrun with one process per GPU when the target has
GPUs, and across nodes for SLURM with `srun` starting one torchrun per node that meet at a c10d rendezvous on the
job's first node.
"""

import shlex
from dataclasses import dataclass, field

from workbench.remote.targets import Target, TargetKind

RDZV_PORT = 29500
SETUP_FAILED_EXIT = 97


@dataclass
class StageCommand:
    stage: str             # base, mid, sft, rl, eval
    module: str            # e.g. nanochat.scripts.base_train
    args: list[str] = field(default_factory=list)
    distributed: bool = True  # one process per GPU under torchrun (data download, tokenizer: one process)


@dataclass
class JobPaths:
    workdir: str  # absolute, on the target

    @property
    def code(self) -> str:
        return f"{self.workdir}/code"

    @property
    def base(self) -> str:
        return f"{self.workdir}/base"

    def run(self, run_id: str) -> str:
        return f"{self.workdir}/runs/{run_id}"


@dataclass
class JobSpec:
    run_id: str
    target: Target
    paths: JobPaths
    stages: list[StageCommand]
    python: str = "python"


def sh_path(path: str) -> str:
    """A shell word for a path on the target; a leading ~/ is expanded there (where the home directory is)."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def stage_command(spec: JobSpec, stage: StageCommand) -> str:
    """One stage's command line: plain python without GPUs or for a single-process stage; torchrun with one process
    per GPU; across SLURM nodes, srun starting one torchrun per node that meet at a rendezvous on the first node."""
    target, py = spec.target, shlex.quote(spec.python)
    args = shlex.join(stage.args)
    if target.gpus == 0 or not stage.distributed:
        return f"{py} -m {stage.module} {args}".rstrip()
    if target.kind is TargetKind.SLURM and target.nodes > 1:
        return (f"srun --ntasks-per-node=1 --kill-on-bad-exit=1 {py} -m torch.distributed.run "
                f"--nnodes=\"$SLURM_NNODES\" --nproc_per_node={target.gpus} --rdzv_id=\"$SLURM_JOB_ID\" "
                f"--rdzv_backend=c10d --rdzv_endpoint=\"$WB_HEAD:{RDZV_PORT}\" -m {stage.module} -- {args}").rstrip()
    return (f"{py} -m torch.distributed.run --standalone --nproc_per_node={target.gpus} "
            f"-m {stage.module} -- {args}").rstrip()


def job_body(spec: JobSpec) -> str:
    """The part shared by the ssh and SLURM scripts: setup, environment, the stages, the exit code."""
    lines = [f"RUN_DIR={sh_path(spec.paths.run(spec.run_id))}",
             "cd \"$RUN_DIR\" && touch started || exit 1",
             "echo \"job $$ on $(hostname) at $(date -u +%FT%TZ)\""]
    if spec.target.setup.strip():
        lines += [f"{{ {spec.target.setup.strip()}\n}} || {{ echo \"the target's setup line failed\"; "
                  f"echo {SETUP_FAILED_EXIT} > \"$RUN_DIR/exit_code\"; exit {SETUP_FAILED_EXIT}; }}"]
    for module in spec.target.modules:
        lines.append(f"module load {shlex.quote(module)}")
    lines += [f"export PYTHONPATH={sh_path(spec.paths.code)}${{PYTHONPATH:+:$PYTHONPATH}}",
              f"export NANOCHAT_BASE_DIR={sh_path(spec.paths.base)}",
              "export PYTHONUNBUFFERED=1"]
    if spec.target.kind is TargetKind.SLURM and spec.target.nodes > 1:
        lines.append("export WB_HEAD=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)")
    lines.append(f"cd {sh_path(spec.paths.code)} || exit 1")
    for stage in spec.stages:
        lines += [f"echo {shlex.quote(stage.stage)} > \"$RUN_DIR/stage\"",
                  f"echo {shlex.quote('=== stage ' + stage.stage + ' ===')}",
                  stage_command(spec, stage),
                  "rc=$?",
                  "if [ \"$rc\" -ne 0 ]; then echo \"$rc\" > \"$RUN_DIR/exit_code\"; exit \"$rc\"; fi"]
    lines.append("echo 0 > \"$RUN_DIR/exit_code\"")
    return "\n".join(lines) + "\n"


def ssh_job_script(spec: JobSpec) -> str:
    return "#!/usr/bin/env bash\n# nanochat-workbench run " + spec.run_id + "\n" + job_body(spec)


def sbatch_script(spec: JobSpec) -> str:
    t = spec.target
    # directives are not expanded by a shell: a ~/ path is given relative to the home directory, where sbatch runs
    run_dir = spec.paths.run(spec.run_id).removeprefix("~/")
    directives = [f"--job-name=wb-{spec.run_id}", f"--output={run_dir}/log.txt", f"--chdir={run_dir}",
                  f"--nodes={t.nodes}", "--ntasks-per-node=1"]
    if t.gpus:
        directives.append(f"--gpus-per-node={t.gpus}")
    for key in ("partition", "account", "time"):
        if getattr(t, key):
            directives.append(f"--{key}={getattr(t, key)}")
    directives += t.extra_sbatch
    header = "\n".join(f"#SBATCH {d}" for d in directives)
    return f"#!/usr/bin/env bash\n{header}\n# nanochat-workbench run {spec.run_id}\n{job_body(spec)}"


def detach_script(run_dir: str) -> str:
    """Start job.sh in a new session with no terminal (it outlives the ssh connection) and record its pid, which
    is also its process group: cancel signals the whole group."""
    d = sh_path(run_dir)
    return (f"cd {d} || exit 1\n"
            f"setsid nohup bash {d}/job.sh > {d}/log.txt 2>&1 < /dev/null &\n"
            f"echo $! > {d}/pid\n"
            f"cat {d}/pid\n")
