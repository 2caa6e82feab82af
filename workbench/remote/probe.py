"""What a target has: one script run through the transport reports its workdir (created, made absolute), the
python that `setup` gives, torch and the GPUs it sees, free disk, the platform and whether sbatch is there.

`targets test` prints every finding; `launch` calls `require_ready()`, which turns the first blocking one into
a RemoteError (missing python, missing torch, disk full, setup failing, no sbatch).
"""

import json
import shlex
from dataclasses import dataclass, field

from workbench.remote.jobs import sh_path
from workbench.remote.ssh import ErrorKind, RemoteError, run_script
from workbench.remote.targets import Target, TargetKind

MIN_FREE_BYTES = 2 * 1024**3

_PY_INFO = r'''
import json, platform, sys
info = {"python": sys.executable, "python_version": platform.python_version()}
try:
    import torch
    info["torch"] = torch.__version__
    info["cuda_count"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    info["gpu_names"] = [torch.cuda.get_device_name(i) for i in range(info["cuda_count"])]
    info["gpu_memory"] = [torch.cuda.get_device_properties(i).total_memory for i in range(info["cuda_count"])]
except Exception as e:
    info["torch_error"] = f"{type(e).__name__}: {e}"
print("WB_PY " + json.dumps(info))
'''


@dataclass
class TargetProbe:
    setup_ok: bool = True
    setup_output: str = ""
    workdir: str | None = None
    platform: str = ""
    free_bytes: int | None = None
    python_cmd: str | None = None
    python: str | None = None
    python_version: str | None = None
    torch: str | None = None
    torch_error: str | None = None
    cuda_count: int = 0
    gpu_names: list[str] = field(default_factory=list)
    gpu_memory: list[int] = field(default_factory=list)
    sbatch: str | None = None


def probe_script(target: Target) -> str:
    setup = target.setup.strip() or ":"
    modules = "".join(f"module load {shlex.quote(m)} >/dev/null 2>&1\n" for m in target.modules)
    return f"""
if ! {{ {setup}
}} > /tmp/wb-setup.$$ 2>&1; then echo "WB_SETUP_FAILED"; tail -n 5 /tmp/wb-setup.$$; rm -f /tmp/wb-setup.$$; exit 0; fi
rm -f /tmp/wb-setup.$$
{modules}mkdir -p {sh_path(target.workdir)} && cd {sh_path(target.workdir)} && echo "WB_WORKDIR $(pwd -P)"
echo "WB_PLATFORM $(uname -sm)"
echo "WB_FREE $(df -Pk . 2>/dev/null | awk 'NR==2 {{printf "%.0f", $4 * 1024}}')"
echo "WB_SBATCH $(command -v sbatch || true)"
PY=$(command -v python || command -v python3 || true)
echo "WB_PYCMD $PY"
[ -n "$PY" ] && "$PY" - <<'WB_PY_EOF'
{_PY_INFO}
WB_PY_EOF
exit 0
"""


def parse_probe(stdout: str) -> TargetProbe:
    probe = TargetProbe()
    lines = stdout.splitlines()
    if lines and lines[0].strip() == "WB_SETUP_FAILED":
        return TargetProbe(setup_ok=False, setup_output="\n".join(lines[1:]).strip())
    for line in lines:
        key, _, value = line.partition(" ")
        value = value.strip()
        if key == "WB_WORKDIR":
            probe.workdir = value or None
        elif key == "WB_PLATFORM":
            probe.platform = value
        elif key == "WB_FREE" and value.isdigit():
            probe.free_bytes = int(value)
        elif key == "WB_SBATCH":
            probe.sbatch = value or None
        elif key == "WB_PYCMD":
            probe.python_cmd = value or None
        elif key == "WB_PY":
            info = json.loads(value)
            for name in ("python", "python_version", "torch", "torch_error", "cuda_count", "gpu_names", "gpu_memory"):
                if name in info:
                    setattr(probe, name, info[name])
    return probe


async def probe_target(target: Target) -> TargetProbe:
    result = await run_script(target, probe_script(target), timeout=120)
    return parse_probe(result.stdout)


@dataclass
class Finding:
    ok: bool
    text: str
    kind: ErrorKind | None = None  # the error a launch would raise for a failed finding


def findings(probe: TargetProbe, target: Target) -> list[Finding]:
    """Every observation about the target, good or bad, in the order a launch needs them."""
    if not probe.setup_ok:
        last = (probe.setup_output.splitlines() or ["no output"])[-1]
        return [Finding(False, f"the setup line {target.setup!r} failed: {last}", ErrorKind.SETUP_FAILED)]
    if probe.workdir is None:
        return [Finding(False, f"workdir {target.workdir} could not be created", ErrorKind.COMMAND_FAILED)]
    out = [Finding(True, f"workdir {probe.workdir}")]
    if probe.python is None:
        out.append(Finding(False, "no python on the target after `setup` (install Python ≥ 3.10 or fix `setup`)",
                           ErrorKind.MISSING_PYTHON))
    elif probe.torch is None:
        out.append(Finding(True, f"python {probe.python_version} ({probe.python})"))
        out.append(Finding(False, f"torch is not importable by {probe.python} ({probe.torch_error}); pip install "
                                  f"torch there, or make `setup` activate an environment that has it",
                           ErrorKind.MISSING_TORCH))
    else:
        gpus = ", ".join(sorted(set(probe.gpu_names))) or "no CUDA GPUs"
        out.append(Finding(True, f"python {probe.python_version} ({probe.python})"))
        out.append(Finding(True, f"torch {probe.torch}; {probe.cuda_count} GPU(s) visible here: {gpus}"))
    if probe.free_bytes is not None:
        enough = probe.free_bytes >= MIN_FREE_BYTES
        need = "" if enough else f" (need ≥ {MIN_FREE_BYTES / 1024**3:.0f} GB)"
        out.append(Finding(enough, f"{probe.free_bytes / 1024**3:.1f} GB free in the workdir{need}",
                           None if enough else ErrorKind.DISK_FULL))
    if target.kind is TargetKind.SLURM:
        out.append(Finding(probe.sbatch is not None, f"sbatch: {probe.sbatch or 'not found on the login node'}",
                           None if probe.sbatch else ErrorKind.NO_TOOL))
    return out


def require_ready(probe: TargetProbe, target: Target) -> None:
    for finding in findings(probe, target):
        if not finding.ok:
            raise RemoteError(finding.kind or ErrorKind.COMMAND_FAILED, f"{target.name}: {finding.text}")
