"""Where runs can go: the targets in `$XDG_CONFIG_HOME/nanochat-workbench/targets.toml` (default ~/.config/...).

    [targets.lab]
    kind = "ssh"                              # "ssh" | "slurm" | "local"
    host = "gpu-box.example.org"              # slurm: the login node ("localhost" = run sbatch here)
    port = 22
    user = "me"
    identity_file = "~/.ssh/id_ed25519"
    ssh_options = ["-o", "ProxyJump=bastion"] # passed to ssh and rsync
    workdir = "~/nanochat-runs"               # code, data and runs on the target
    setup = "source ~/venvs/nanochat/bin/activate"   # run before every remote command
    gpus = 8                                  # per node
    gpu = "H100"                              # for the memory/time/cost estimate
    price_per_gpu_hour = 2.5
    # slurm only: partition, account, nodes, time, modules, extra_sbatch

`load_targets()` reads and validates the file into `Target`s (one line per mistake, naming the target and the
key); `save_targets()` writes it back atomically. The file is plain TOML, meant to be edited by hand too.
"""

import dataclasses
import enum
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from workbench.remote.files import atomic_write_text


class TargetKind(str, enum.Enum):
    SSH = "ssh"
    SLURM = "slurm"
    LOCAL = "local"


class TargetError(ValueError):
    """targets.toml is unreadable or a target in it is invalid; the message is one line naming the key."""


@dataclass
class Target:
    name: str
    kind: TargetKind
    host: str = "localhost"
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    ssh_options: list[str] = field(default_factory=list)
    workdir: str = "~/nanochat-runs"
    setup: str = ""
    gpus: int = 0
    gpu: str | None = None
    price_per_gpu_hour: float | None = None
    # slurm only
    partition: str | None = None
    account: str | None = None
    nodes: int = 1
    time: str | None = None
    modules: list[str] = field(default_factory=list)
    extra_sbatch: list[str] = field(default_factory=list)

    @property
    def runs_here(self) -> bool:
        """Commands run on this machine (no ssh): local targets, and SLURM with host = localhost."""
        return self.kind is TargetKind.LOCAL or (self.kind is TargetKind.SLURM and self.host == "localhost")

    @property
    def total_gpus(self) -> int:
        return self.gpus * (self.nodes if self.kind is TargetKind.SLURM else 1)


NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
TIME_RE = re.compile(r"(\d+-)?\d{1,2}(:\d{2}){0,2}")  # SLURM's D-HH:MM:SS and its shorter forms
_TYPES = {f.name: f.type for f in dataclasses.fields(Target)}
_STR_LISTS = ("ssh_options", "modules", "extra_sbatch")


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "nanochat-workbench" / "targets.toml"


def _check_value(name: str, key: str, value):
    """The value of `key` converted to its field's type, or TargetError naming target and key."""
    where = f"targets.{name}.{key}"
    if key in _STR_LISTS:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TargetError(f"{where} must be a list of strings, e.g. [\"-o\", \"ProxyJump=bastion\"]")
        return list(value)
    if key in ("port", "gpus", "nodes"):
        low = 1 if key != "gpus" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise TargetError(f"{where} must be a whole number ≥ {low}, got {value!r}")
        return value
    if key == "price_per_gpu_hour":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise TargetError(f"{where} must be a number ≥ 0, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise TargetError(f"{where} must be a string, got {value!r}")
    if key == "time" and not TIME_RE.fullmatch(value):
        raise TargetError(f"{where} must be a SLURM time limit such as \"04:00:00\" or \"1-00:00:00\", got {value!r}")
    return value


def target_from_dict(name: str, data: dict) -> Target:
    if not NAME_RE.fullmatch(name):
        raise TargetError(f"target name {name!r}: use letters, digits, '-', '_' or '.'")
    if not isinstance(data, dict):
        raise TargetError(f"targets.{name} must be a table")
    unknown = sorted(set(data) - set(_TYPES) - {"name"})
    if unknown:
        known = ", ".join(k for k in _TYPES if k != "name")
        raise TargetError(f"targets.{name}: unknown key {unknown[0]!r} (known: {known})")
    try:
        kind = TargetKind(data.get("kind", ""))
    except ValueError:
        raise TargetError(f"targets.{name}.kind must be \"ssh\", \"slurm\" or \"local\", "
                          f"got {data.get('kind')!r}") from None
    values = {k: _check_value(name, k, v) for k, v in data.items() if k not in ("kind", "name")}
    if kind is TargetKind.SSH and not values.get("host"):
        raise TargetError(f"targets.{name}.host is required for an ssh target")
    if kind is not TargetKind.SLURM:
        slurm_only = [k for k in ("partition", "account", "time", "modules", "extra_sbatch") if k in values]
        if slurm_only or values.get("nodes", 1) != 1:
            raise TargetError(f"targets.{name}.{(slurm_only or ['nodes'])[0]} is only for slurm targets")
    if kind is TargetKind.LOCAL:
        values["host"] = "localhost"
    return Target(name=name, kind=kind, **values)


def load_targets(path: Path | None = None) -> dict[str, Target]:
    """Every target of the file, by name; {} when the file does not exist."""
    path = Path(path or config_path())
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise TargetError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{path} is not valid TOML: {e}") from None
    tables = data.get("targets", {})
    if not isinstance(tables, dict):
        raise TargetError(f"{path}: `targets` must be a table of [targets.NAME] tables")
    return {name: target_from_dict(name, table) for name, table in tables.items()}


def get_target(name: str, path: Path | None = None) -> Target:
    targets = load_targets(path)
    if name not in targets:
        known = ", ".join(sorted(targets)) or "none yet: add one with `nanochat-workbench targets add`"
        raise TargetError(f"no target named {name!r} in {Path(path or config_path())} (targets: {known})")
    return targets[name]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    text = "".join(c if c >= " " and c != "\x7f" else f"\\u{ord(c):04x}" for c in text)
    return f'"{text}"'


def to_toml(targets: dict[str, Target]) -> str:
    """The file's text: one [targets.NAME] table each, keys left at their default omitted."""
    lines = ["# nanochat-workbench targets: where `nanochat-workbench launch --target NAME` runs.", ""]
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(Target)}
    for name, target in targets.items():
        lines.append(f"[targets.{name}]")
        lines.append(f"kind = {_toml_value(target.kind.value)}")
        for key in _TYPES:
            value = getattr(target, key)
            if key in ("name", "kind") or value is None or (value == defaults[key] and key not in ("host", "workdir")):
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def save_targets(targets: dict[str, Target], path: Path | None = None) -> Path:
    path = Path(path or config_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, to_toml(targets))
    return path
