"""Runs on a GPU box or a cluster, over the user's own ssh, rsync and SLURM.

    targets.py   targets.toml: the Target schema, load/save      ssh.py      ssh/rsync as asyncio subprocesses
    probe.py     what a target has (python, torch, GPUs, disk)    jobs.py     job scripts: torchrun, sbatch, detach
    slurm.py     sbatch/squeue/scontrol/sacct/scancel text        records.py  local run records (RunRecord, RunState)
    service.py   plan and launch a run                            monitor.py  state, log, metrics, cancel, pull back
    gate.py      the readiness gate before a paid run             files.py    atomic writes, the XDG state folder
    targets_command.py, launch_command.py, runs_command.py       the `targets`, `launch` and `runs` commands

Nothing here imports torch at import time (the gate imports it when it runs). service.launch and the monitor
functions are async and print nothing; the CLI and the TUI call the same functions.
"""
