"""Runs on a GPU box or a cluster: targets (targets.toml), the ssh/rsync transport, job scripts, SLURM, local run
records, the readiness gate, and the `targets`, `launch` and `runs` commands.

    targets.py   the targets.toml schema                 ssh.py     ssh/rsync as asyncio subprocesses
    jobs.py      job scripts (torchrun, sbatch)          slurm.py   sbatch/squeue/scontrol/sacct/scancel
    records.py   local run records (id, state, ...)      gate.py    the readiness gate before a paid run
    service.py   launch, poll, tail, cancel, pull back   commands.py  the CLI subcommands

Nothing here imports torch at import time; the service functions are async and print nothing, so the TUI can
call them as the CLI does.
"""
