"""Fetch task data: `python -m nanochat.tasks.download gsm8k arc mmlu smoltalk` (or `all`).

Files go to $NANOCHAT_BASE_DIR/tasks/<group>/ through the project's resumable downloader
(`nanochat.dataset.download_url`: a `.part` file resumed with HTTP Range requests, retries with backoff,
checked as parquet before the rename), so an interrupted download continues where it stopped when the same
command is run again. `$NANOCHAT_TASKS_URL` (or --base-url) points at a mirror of the hub's layout.
HumanEval and the spelling tasks need no download: their data ships in PyPI packages.
"""

import argparse
import sys

from nanochat.tasks.data import SOURCES, local_path, tasks_url


def download_group(group: str, base_url: str, attempts: int = 5) -> list[str]:
    """Download a group's missing files; returns the one-line errors of those that failed."""
    from nanochat import dataset

    errors = []
    for name, remote in SOURCES[group].items():
        final = local_path(group, name)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            fetched = dataset.download_url(f"{base_url}/{remote}", final, attempts=attempts)
        except dataset.DownloadError as e:
            errors.append(f"{group}/{name}: {e}")
            if e.offline:
                break  # the host is unreachable: the group's other files will not come either
            continue
        print(f"{'downloaded' if fetched else 'already there:'} {final}")
    return errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanochat.tasks.download", description=__doc__.split("\n")[0])
    parser.add_argument("groups", nargs="+", choices=[*SOURCES, "all"], help="which datasets to fetch")
    parser.add_argument("--base-url", default=None, help="server with the hub's layout (default $NANOCHAT_TASKS_URL "
                                                         "or Hugging Face)")
    parser.add_argument("--attempts", type=int, default=5, help="tries per file, with exponential backoff")
    args = parser.parse_args(argv)
    groups = list(SOURCES) if "all" in args.groups else list(dict.fromkeys(args.groups))
    base_url = (args.base_url or tasks_url()).rstrip("/")
    errors = []
    for group in groups:
        errors += download_group(group, base_url, args.attempts)
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
