"""`nanochat-workbench targets add|list|test|remove`: edit targets.toml without opening it, and test a target
(connection, python/torch/GPUs, free disk, sbatch for SLURM), printing each finding."""

import argparse
import asyncio
import json
import sys

from nanochat.common import non_negative_float, non_negative_int, positive_int
from workbench.remote.probe import findings, probe_target
from workbench.remote.ssh import RemoteError
from workbench.remote.targets import (TIME_RE, Target, TargetError, TargetKind, config_path, get_target, load_targets,
                                      save_targets, target_from_dict)

PROG = "nanochat-workbench targets"


def _slurm_time(text: str) -> str:
    if not TIME_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a SLURM time such as 04:00:00 or 1-00:00:00, got {text!r}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = f"The file: {config_path()} ($XDG_CONFIG_HOME/nanochat-workbench/targets.toml)."
    sub = parser.add_subparsers(dest="targets_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add (or with --replace, replace) a target")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--kind", choices=[k.value for k in TargetKind], required=True)
    add.add_argument("--host", help="ssh host, or the SLURM login node (localhost: sbatch here)")
    add.add_argument("--port", type=positive_int)
    add.add_argument("--user")
    add.add_argument("--identity-file", metavar="PATH")
    add.add_argument("--ssh-option", action="append", default=None, metavar="OPT",
                     help="an option for ssh and rsync, e.g. --ssh-option=-oProxyJump=bastion (repeatable)")
    add.add_argument("--workdir", help="directory on the target for code, data and runs (default ~/nanochat-runs)")
    add.add_argument("--setup", help="shell line run before every remote command, e.g. 'source ~/venv/bin/activate'")
    add.add_argument("--gpus", type=non_negative_int, help="GPUs per node (0: CPU only)")
    add.add_argument("--gpu", help="GPU type for the estimate, e.g. H100")
    add.add_argument("--price-per-gpu-hour", type=non_negative_float, metavar="USD")
    add.add_argument("--partition")
    add.add_argument("--account")
    add.add_argument("--nodes", type=positive_int)
    add.add_argument("--time", type=_slurm_time, help="SLURM time limit, e.g. 04:00:00")
    add.add_argument("--module", action="append", default=None, help="environment module to load (repeatable)")
    add.add_argument("--sbatch", action="append", default=None, metavar="OPT", help="extra #SBATCH line (repeatable)")
    add.add_argument("--replace", action="store_true", help="replace a target of the same name")
    listing = sub.add_parser("list", help="the targets in targets.toml")
    listing.add_argument("--json", action="store_true")
    test = sub.add_parser("test", help="connect and report python, torch, GPUs, free disk, sbatch")
    test.add_argument("name", metavar="NAME")
    remove = sub.add_parser("remove", help="remove a target")
    remove.add_argument("name", metavar="NAME")


_FLAG_KEYS = {"host": "host", "port": "port", "user": "user", "identity_file": "identity_file",
              "ssh_option": "ssh_options", "workdir": "workdir", "setup": "setup", "gpus": "gpus", "gpu": "gpu",
              "price_per_gpu_hour": "price_per_gpu_hour", "partition": "partition", "account": "account",
              "nodes": "nodes", "time": "time", "module": "modules", "sbatch": "extra_sbatch"}


def _add(args) -> int:
    targets = load_targets()
    if args.name in targets and not args.replace:
        return _usage(f"a target named {args.name!r} exists; pass --replace to replace it")
    data = {"kind": args.kind}
    data.update({key: getattr(args, flag) for flag, key in _FLAG_KEYS.items() if getattr(args, flag) is not None})
    targets[args.name] = target_from_dict(args.name, data)
    path = save_targets(targets)
    print(f"saved target {args.name!r} in {path}; try it: nanochat-workbench targets test {args.name}")
    return 0


def _describe(t: Target) -> str:
    where = "this machine" if t.runs_here else f"{t.user + '@' if t.user else ''}{t.host}:{t.port}"
    gpus = f"{t.nodes}×{t.gpus} {t.gpu or 'GPU'}" if t.gpus else "CPU"
    return f"{t.name:12s} {t.kind.value:6s} {where:28s} {gpus:14s} {t.workdir}"


def _list(args) -> int:
    targets = load_targets()
    if args.json:
        print(json.dumps([{**vars(t), "kind": t.kind.value} for t in targets.values()], indent=1))
    elif not targets:
        print(f"no targets yet ({config_path()}); add one: nanochat-workbench targets add NAME --kind ssh --host HOST")
    else:
        print("\n".join(_describe(t) for t in targets.values()))
    return 0


def _test(args) -> int:
    target = get_target(args.name)
    print(f"testing {_describe(target)}")
    try:
        probe = asyncio.run(probe_target(target))
    except RemoteError as e:
        print(f"  ✗ {e}")
        return 1
    results = findings(probe, target)
    for finding in results:
        print(f"  {'✓' if finding.ok else '✗'} {finding.text}")
    return 0 if all(f.ok for f in results) else 1


def _remove(args) -> int:
    targets = load_targets()
    if args.name not in targets:
        return _usage(f"no target named {args.name!r} (targets: {', '.join(targets) or 'none'})")
    del targets[args.name]
    save_targets(targets)
    print(f"removed target {args.name!r}")
    return 0


def _usage(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    try:
        return {"add": _add, "list": _list, "test": _test, "remove": _remove}[args.targets_command](args)
    except TargetError as e:
        return _usage(str(e))
