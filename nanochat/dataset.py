"""Pretraining text: the FineWeb-Edu parquet shards (download and iteration), or the embedded offline corpus.

The shards are the ones nanochat trains on: FineWeb-Edu (100B-token sample), reshuffled and cut into 1823 parquet
files of about 100 MB (`shard_00000.parquet` ... `shard_01822.parquet`), each with a `text` column, hosted at
BASE_URL. They live in `$NANOCHAT_BASE_DIR/base_data/`. As in nanochat, the last shard present on disk is the
validation split and all the others are the training split.

    python -m nanochat.dataset -n 8 -w 4      # the first 8 shards, 4 downloads at a time

Downloads are retried with exponential backoff, streamed to `<name>.part` and resumed from there with an HTTP
Range request after a broken connection (or a Ctrl-C), checked to be a readable parquet file, and only then
renamed to their final name, so a file named `shard_*.parquet` is always complete. The base URL can be changed
with `--base-url` or $NANOCHAT_DATA_URL (a mirror, or the local server of the tests).

With no shards on disk, everything reads the embedded corpus (`nanochat.embedded_corpus`) instead: the
tokenizer, the data loader and the evals work offline on a fresh install.

Iteration is by "row groups" (parquet's unit of reading, about a thousand documents in these shards) so that
ranks of a distributed run can take turns: rank r of w reads row groups r, r + w, r + 2w, ... of every file.
The embedded corpus is treated as one file whose row groups are single documents.
"""

import argparse
import http.client
import os
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

BASE_URL = "https://huggingface.co/datasets/karpathy/fineweb-edu-100b-shuffle/resolve/main"
MAX_SHARD = 1822  # shard_01822.parquet is the last one
SOURCES = ("auto", "shards", "embedded")
OFFLINE_HINT = (
    "The embedded offline corpus is used by default when no shards are present: nothing to do for a first run. "
    "Download shards when you have a connection and want to train on real web text."
)


def index_to_filename(index: int) -> str:
    return f"shard_{index:05d}.parquet"


def get_data_dir() -> Path:
    from nanochat.common import get_base_dir  # imports torch: only when the default location is needed

    path = Path(get_base_dir()) / "base_data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def get_base_url(base_url: str | None = None) -> str:
    return (base_url or os.environ.get("NANOCHAT_DATA_URL") or BASE_URL).rstrip("/")


# ---------------------------------------------------------------------------------------------------------------
# reading


def list_parquet_files(data_dir=None) -> list[str]:
    """Full paths of the complete shards in the data dir, sorted (partial `.part` downloads are not listed)."""
    data_dir = Path(data_dir) if data_dir else get_data_dir()
    if not data_dir.is_dir():
        return []
    return sorted(str(p) for p in data_dir.glob("*.parquet") if not p.name.startswith("."))


def split_files(split: str, data_dir=None) -> list[str]:
    """The shards of a split: "val" is the last shard on disk, "train" every other one."""
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}: choose 'train' or 'val'")
    files = list_parquet_files(data_dir)
    if not files:
        raise FileNotFoundError(
            f"no parquet shards in {data_dir or get_data_dir()}: download some with `python -m nanochat.dataset -n 8`, "
            "or use the embedded corpus (source='embedded')"
        )
    if len(files) == 1 and split == "train":
        raise ValueError(
            f"only one shard ({files[0]}) is present and the last shard is the validation split, so there is no "
            "training data: download at least two (`python -m nanochat.dataset -n 2`)"
        )
    return files[:-1] if split == "train" else files[-1:]


def resolve_source(source: str = "auto") -> str:
    """"shards" or "embedded": "auto" means shards when any are downloaded, else the embedded corpus."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: choose one of {', '.join(SOURCES)}")
    if source == "auto":
        return "shards" if list_parquet_files() else "embedded"
    return source


class DataError(ValueError):
    """A shard cannot be read (not parquet, a damaged row group, no 'text' column); the message names the file."""


def _open_shard(path: str):
    """The shard as a ParquetFile, after checking it has a string 'text' column."""
    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for damaged files
        raise DataError(f"cannot read {path} as parquet ({e}); delete it and download it again") from None
    schema = parquet.schema_arrow
    if "text" not in schema.names:
        raise DataError(f"{path} has no 'text' column (its columns: {', '.join(schema.names) or 'none'}); "
                        "a shard holds one document per row in a string column named 'text'")
    if not (pa.types.is_string(schema.field("text").type) or pa.types.is_large_string(schema.field("text").type)):
        raise DataError(f"{path}: its 'text' column holds {schema.field('text').type}, not strings")
    return parquet


def _read_texts(parquet, path: str, rg_idx: int) -> list[str]:
    try:
        texts = parquet.read_row_group(rg_idx, columns=["text"]).column("text").to_pylist()
    except Exception as e:  # a damaged page or a bad decompression surfaces as one of several pyarrow errors
        detail = "".join(ch for ch in " ".join(str(e).split()) if ch.isprintable())  # pyarrow's are multi-line
        raise DataError(f"{path}: row group {rg_idx} is unreadable ({type(e).__name__}: {detail}); delete the file "
                        "and download it again") from None
    return [t for t in texts if t is not None]


def row_groups(split: str, start: int = 0, step: int = 1, source: str = "auto", resume_at=None):
    """Yield (pq_idx, rg_idx, documents) for the row groups start, start + step, ... of every file, in order.

    `resume_at=(pq_idx, rg_idx)` begins at that row group instead (it must be one of this rank's). For the
    embedded corpus pq_idx is always 0 and each row group is one document.
    """
    if not (0 <= start < step):
        raise ValueError(f"need 0 <= start < step, got start={start}, step={step}")
    first_pq, first_rg = resume_at if resume_at is not None else (0, start)
    if (first_rg - start) % step != 0:
        raise ValueError(f"row group {first_rg} does not belong to rank {start} of {step}")
    if resolve_source(source) == "embedded":
        from nanochat import embedded_corpus

        docs = embedded_corpus.split(split)
        if first_pq == 0:
            for rg_idx in range(first_rg, len(docs), step):
                yield 0, rg_idx, [docs[rg_idx]]
        return
    for pq_idx, path in enumerate(split_files(split)):
        if pq_idx < first_pq:
            continue
        parquet = _open_shard(path)
        rg_start = first_rg if pq_idx == first_pq else start
        for rg_idx in range(rg_start, parquet.num_row_groups, step):
            yield pq_idx, rg_idx, _read_texts(parquet, path, rg_idx)


def parquets_iter_batched(split: str, start: int = 0, step: int = 1):
    """The documents of the downloaded shards, one list per row group, striding row groups by rank."""
    for _, _, docs in row_groups(split, start, step, source="shards"):
        yield docs


def documents_batched(split: str, start: int = 0, step: int = 1, source: str = "auto"):
    """One pass over a split's documents, a list per row group (shards) or per document (embedded corpus)."""
    for _, _, docs in row_groups(split, start, step, source=source):
        yield docs


# ---------------------------------------------------------------------------------------------------------------
# downloading


class DownloadError(RuntimeError):
    def __init__(self, message: str, offline: bool = False):
        super().__init__(message)
        self.offline = offline


class _Retry(Exception):
    """A failed attempt worth retrying (server error, broken or short connection, bad file)."""


_STOP = threading.Event()  # set on Ctrl-C: running downloads stop at the next chunk and keep their .part


def _looks_offline(error: BaseException) -> bool:
    """True for "could not connect at all" (DNS failure, refused, unreachable, connect timeout)."""
    if isinstance(error, urllib.error.HTTPError):
        return False
    if isinstance(error, urllib.error.URLError):
        return isinstance(error.reason, OSError)
    return isinstance(error, (socket.gaierror, ConnectionRefusedError))


def _is_valid_parquet(path: Path) -> bool:
    """a readable parquet file"""  # completes "the downloaded file is not ..."
    try:
        pq.ParquetFile(path).metadata  # reads and checks the footer
        return True
    except Exception:
        return False


def _stream_to_part(url: str, part: Path, timeout_s: float, chunk_bytes: int) -> None:
    """One attempt: fetch `url` into `part`, resuming from its current size. Raises _Retry or HTTPError."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "nanochat-workbench"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s) as response:
        if offset and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                part.unlink(missing_ok=True)
                raise _Retry(f"server answered Range {offset}- with {content_range!r}; starting over")
            mode = "ab"
        else:  # 200: a fresh download, or a server that ignores Range and sends the whole file again
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        written = 0
        with open(part, mode) as f:
            while not _STOP.is_set():
                chunk = response.read(chunk_bytes)
                if not chunk:
                    break
                f.write(chunk)
                written += len(chunk)
        if _STOP.is_set():
            raise KeyboardInterrupt
        if expected is not None and written < expected:
            raise _Retry(f"connection closed after {offset + written:,} of {offset + expected:,} bytes")


def download_single_file(
    index: int,
    data_dir=None,
    base_url: str | None = None,
    attempts: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
    chunk_bytes: int = 1 << 20,
) -> tuple[Path, bool]:
    """Download shard `index` into the data dir. Returns (path, downloaded): downloaded is False if it was there.
    See `download_url` for the retries and the `.part` file."""
    if not 0 <= index <= MAX_SHARD:
        raise ValueError(f"shard index {index} is out of range 0..{MAX_SHARD}")
    data_dir = Path(data_dir) if data_dir else get_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    final = data_dir / index_to_filename(index)
    downloaded = download_url(f"{get_base_url(base_url)}/{final.name}", final, attempts=attempts, backoff_s=backoff_s,
                              timeout_s=timeout_s, chunk_bytes=chunk_bytes)
    return final, downloaded


def download_url(url: str, final: Path, validate=_is_valid_parquet, attempts: int = 5, backoff_s: float = 2.0,
                 timeout_s: float = 60.0, chunk_bytes: int = 1 << 20) -> bool:
    """Download `url` to `final` through `final`.part: False if `final` was already there, True once downloaded.

    `validate(part)` must accept the whole file before it is renamed into place (default: a readable parquet
    file); its docstring, if any, names what it checks in the error ("a readable parquet file"). Retries up to `attempts` times, sleeping backoff_s, 2*backoff_s, 4*backoff_s, ... (plus jitter) in
    between; each retry resumes the `.part` file with an HTTP Range request. Raises DownloadError (with
    `.offline` set when the host cannot be reached at all).
    """
    final = Path(final)
    part = final.with_name(final.name + ".part")
    if final.exists():
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    last_error, offline = "", False
    for attempt in range(1, attempts + 1):
        try:
            _attempt(url, part, final, validate, timeout_s, chunk_bytes)
            return True
        except urllib.error.HTTPError as e:
            if e.code in (400, 401, 403, 404, 410):
                raise DownloadError(f"{final.name}: {url} answered HTTP {e.code} {e.reason}") from None
            last_error, offline = f"HTTP {e.code} {e.reason}", False
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError, OSError, _Retry) as e:
            last_error = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            offline = _looks_offline(e) and not isinstance(e, _Retry)
        if attempt < attempts:
            delay = backoff_s * 2 ** (attempt - 1)
            time.sleep(min(delay + random.uniform(0, backoff_s), 120))
    if offline:
        host = url.split("/")[2] if "://" in url else url
        raise DownloadError(f"could not reach {host} ({last_error}). {OFFLINE_HINT}", offline=True)
    kept = f"; {part.stat().st_size:,} bytes kept in {part} for the next try" if part.exists() else ""
    raise DownloadError(f"{final.name}: failed after {attempts} attempts ({last_error}){kept}")


def _attempt(url: str, part: Path, final: Path, validate, timeout_s: float, chunk_bytes: int) -> None:
    """One try: stream into `part`, validate it, rename it to `final`. Raises _Retry or a network error."""
    try:
        _stream_to_part(url, part, timeout_s, chunk_bytes)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not part.exists():
            raise
        # 416: nothing left to send, so the .part may already be complete
        if not validate(part):
            part.unlink()
            raise _Retry("HTTP 416 on a damaged partial file; starting over") from None
    else:
        if not validate(part):
            part.unlink(missing_ok=True)
            raise _Retry(f"the downloaded file is not {validate.__doc__ or 'valid'}; starting over")
    os.replace(part, final)


def probe(url: str, timeout_s: float = 15.0) -> str | None:
    """None if the host answers at all (any HTTP status), else why it cannot be reached."""
    try:
        request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "nanochat-workbench"})
        urllib.request.urlopen(request, timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        return f"{type(e).__name__}: {getattr(e, 'reason', e)}"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nanochat.dataset",
        description="Download FineWeb-Edu pretraining shards (~100 MB each; the last one present is the val split).",
    )
    parser.add_argument("-n", "--num-files", type=int, default=-1,
                        help=f"download shards 0..N-1 (default -1: all {MAX_SHARD + 1})")
    parser.add_argument("-w", "--num-workers", type=int, default=4, help="parallel downloads (default 4)")
    parser.add_argument("--data-dir", default=None, help="where to put them (default $NANOCHAT_BASE_DIR/base_data)")
    parser.add_argument("--base-url", default=None,
                        help="server to download from (default $NANOCHAT_DATA_URL, else Hugging Face)")
    parser.add_argument("--attempts", type=int, default=5, help="tries per shard, with exponential backoff (default 5)")
    args = parser.parse_args(argv)
    if args.num_files == 0 or args.num_files < -1:
        parser.error("-n must be a positive number of shards, or -1 for all of them")
    if args.num_workers < 1 or args.attempts < 1:
        parser.error("-w and --attempts must be at least 1")

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    num = MAX_SHARD + 1 if args.num_files == -1 else min(args.num_files, MAX_SHARD + 1)
    data_dir = Path(args.data_dir) if args.data_dir else get_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(num) if not (data_dir / index_to_filename(i)).exists()]
    print(f"{num - len(todo)} of {num} shards already in {data_dir}")
    if not todo:
        return 0
    base_url = get_base_url(args.base_url)
    unreachable = probe(f"{base_url}/{index_to_filename(todo[0])}")
    if unreachable:
        host = base_url.split("/")[2] if "://" in base_url else base_url
        print(f"could not reach {host} ({unreachable}).\n{OFFLINE_HINT}", file=sys.stderr)
        return 1

    failures = []
    with Progress(TextColumn("downloading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
        task = progress.add_task("shards", total=len(todo))
        with ThreadPoolExecutor(max_workers=args.num_workers) as pool:
            futures = {pool.submit(download_single_file, i, data_dir, base_url, args.attempts): i for i in todo}
            try:
                for future in as_completed(futures):
                    try:
                        future.result()
                    except DownloadError as e:
                        failures.append(str(e))
                        progress.console.print(f"[red]{e}")
                    progress.advance(task)
            except KeyboardInterrupt:
                _STOP.set()
                pool.shutdown(wait=True, cancel_futures=True)
                print("interrupted: partial downloads are kept as .part files and resume next time", file=sys.stderr)
                return 130
    done = len(todo) - len(failures)
    failed = f"; {len(failures)} failed (run the same command again to resume them)" if failures else ""
    print(f"downloaded {done} shard(s) into {data_dir}{failed}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
