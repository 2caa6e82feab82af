"""`nanochat-workbench runs [--json]`: the runs launched on targets (their states asked from the targets) and the
local checkpoint folders; `--cancel ID`, `--log ID`, `--wait ID` (follow and pull back), `--pull ID`.

`--json` prints a list of objects: the RunRecord fields (id, target, state, stages, job_id, pid, remote_dir, ...)
for launched runs, and {id, target: "local", kind: "checkpoint", state: "done", dir, steps, ...} for local
checkpoint folders that no launched run pulled back.
"""

import argparse
import asyncio
import json
import sys
import time

from nanochat.common import get_base_dir, positive_int
from workbench.remote import monitor
from workbench.remote.launch_command import follow, report_end
from workbench.remote.records import RunRecord, load_record, load_records
from workbench.remote.ssh import RemoteError
from workbench.remote.targets import TargetError, load_targets

PROG = "nanochat-workbench runs"
REFRESH_TIMEOUT_S = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    parser.add_argument("--no-refresh", action="store_true", help="show the recorded states without asking targets")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--cancel", metavar="ID", help="cancel a run (scancel, or stop its process group)")
    action.add_argument("--log", metavar="ID", help="print the last lines of a run's log")
    action.add_argument("--wait", metavar="ID", help="follow a run to its end and pull the results back")
    action.add_argument("--pull", metavar="ID", help="pull a finished run's results back again")
    parser.add_argument("--lines", type=positive_int, default=40, help="log lines for --log (default 40)")


async def _refresh_one(targets, record: RunRecord) -> tuple[RunRecord, str | None]:
    target = targets.get(record.target)
    if target is None:
        return record, f"target {record.target!r} is no longer in targets.toml"
    try:
        return await asyncio.wait_for(monitor.refresh(target, record), REFRESH_TIMEOUT_S), None
    except (RemoteError, asyncio.TimeoutError) as e:
        return record, f"{record.target}: {e or 'no answer'}"


async def refresh_all(records: list[RunRecord]) -> tuple[list[RunRecord], list[str]]:
    targets = load_targets()
    results = await asyncio.gather(*(_refresh_one(targets, r) for r in records))
    return [r for r, _ in results], sorted({note for _, note in results if note})


def local_checkpoints(records: list[RunRecord]) -> list[dict]:
    from workbench.tui.services.runs import scan_runs  # no torch: reads folders and metrics.jsonl
    pulled = {p for r in records for p in r.pulled}
    rows = []
    for source in ("base", "mid", "sft", "rl"):
        for info in scan_runs(get_base_dir(), source):
            if str(info.directory) in pulled:
                continue
            rows.append({"id": f"local:{source}/{info.tag}", "target": "local", "kind": "checkpoint", "state": "done",
                         "dir": str(info.directory), "steps": info.steps, "model": info.model_source,
                         "last_loss": info.last_loss, "val_bpb": info.val_bpb})
    return rows


def _print_table(records: list[RunRecord], local: list[dict]) -> None:
    if not records and not local:
        print("no runs yet: nanochat-workbench launch --target NAME --stage base --preset cpu")
    for r in records:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started))
        job = f"job {r.job_id}" if r.job_id else f"pid {r.pid}"
        print(f"{r.id}  {r.target:10s} {r.state.value:9s} {r.stage or '-':9s} {job:12s} {started}  {r.model}")
        if r.state.value == "failed" and r.message:
            print(f"    {r.message.splitlines()[0]}")
    for row in local:
        print(f"{row['id']:26s} local      done      steps {row['steps'][-1] if row['steps'] else '-'}  {row['dir']}")


async def _act(args) -> int:
    record = load_record(args.cancel or args.log or args.wait or args.pull)
    targets = load_targets()
    if record.target not in targets:
        print(f"{PROG}: error: target {record.target!r} of run {record.id} is not in targets.toml", file=sys.stderr)
        return 1
    target = targets[record.target]
    if args.log:
        print("\n".join(await monitor.tail_log(target, record, args.lines)))
        return 0
    if args.cancel:
        record = await monitor.cancel(target, record)
        print(f"run {record.id}: {record.state.value}")
        return 0 if record.state.finished else 1
    if args.wait:
        return report_end(await follow(target, record))
    record = await monitor.pull_results(target, record, progress=lambda m: print(m, file=sys.stderr))
    print("\n".join(record.pulled))
    return 0


def run(args) -> int:
    try:
        if args.cancel or args.log or args.wait or args.pull:
            return asyncio.run(_act(args))
        records = load_records()
        notes = []
        if not args.no_refresh and any(not r.state.finished for r in records):
            records, notes = asyncio.run(refresh_all(records))
    except KeyError as e:
        print(f"{PROG}: error: {e.args[0]}", file=sys.stderr)
        return 2
    except TargetError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except RemoteError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    local = local_checkpoints(records)
    if args.json:
        print(json.dumps([r.to_dict() for r in records] + local, indent=1))
    else:
        _print_table(records, local)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0
