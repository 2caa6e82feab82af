"""Shard download (against a local HTTP server), parquet iteration, and the embedded offline corpus."""

import http.server
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nanochat import dataset, embedded_corpus
from nanochat.dataset import DownloadError, download_single_file, index_to_filename


def make_shard_bytes(docs, row_group_size=4) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"text": docs}), sink, row_group_size=row_group_size)
    return sink.getvalue()


def shard_docs(index, n=30):
    return [f"document {i} of shard {index}: " + "some words " * (i % 7 + 1) for i in range(n)]


# --- a local file server with scriptable misbehaviour ----------------------------------------------------------


class ShardServer:
    """Serves {name: bytes} on 127.0.0.1, honouring Range, with a per-request script of failures.

    `script` is a list of actions consumed one per GET: "500" (error), "truncate" (full Content-Length, half the
    body, then close), "ignore-range" (200 with the whole file even if Range was asked), "ok" (normal). When the
    script is empty every request is served normally.
    """

    def __init__(self, files: dict[str, bytes]):
        self.files, self.script, self.requests = files, [], []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                body = server.files.get(self.path.lstrip("/"))
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()

            def do_GET(self):
                action = server.script.pop(0) if server.script else "ok"
                server.requests.append((self.path, self.headers.get("Range"), action))
                body = server.files.get(self.path.lstrip("/"))
                if body is None:
                    return self.send_error(404)
                if action == "500":
                    return self.send_error(500)
                start = 0
                range_header = self.headers.get("Range")
                if range_header and action != "ignore-range":
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        return self.end_headers()
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if action == "truncate":
                    payload = payload[: len(payload) // 2]
                    self.close_connection = True
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    files = {index_to_filename(i): make_shard_bytes(shard_docs(i)) for i in range(3)}
    files["shard_00009.parquet"] = b"this is not a parquet file" * 100
    s = ShardServer(files)
    yield s
    s.close()


def fetch(server, tmp_path, index=0, **kw):
    kw = {"base_url": server.url, "backoff_s": 0.01, "attempts": 4, "timeout_s": 10, **kw}
    return download_single_file(index, data_dir=tmp_path, **kw)


def assert_clean_valid_shard(path: Path, index: int):
    assert path.name == index_to_filename(index)
    assert pq.read_table(path).column("text").to_pylist() == shard_docs(index)
    leftovers = [p.name for p in path.parent.iterdir() if p.name != path.name and not p.name.startswith("shard_")]
    assert not leftovers and not list(path.parent.glob("*.part"))


# --- downloading ---------------------------------------------------------------------------------------------


def test_download_retries_server_errors_then_succeeds(server, tmp_path):
    server.script = ["500", "500"]
    path, downloaded = fetch(server, tmp_path)
    assert downloaded
    assert [a for _, _, a in server.requests] == ["500", "500", "ok"]
    assert_clean_valid_shard(path, 0)
    # a complete file is not fetched again
    assert fetch(server, tmp_path) == (path, False) and len(server.requests) == 3


def test_truncated_download_resumes_with_range(server, tmp_path):
    size = len(server.files[index_to_filename(1)])
    server.script = ["truncate"]
    path, _ = fetch(server, tmp_path, index=1)
    (_, first_range, _), (_, second_range, _) = server.requests
    assert first_range is None
    assert second_range == f"bytes={size // 2}-"  # resumed exactly where the broken transfer stopped
    assert_clean_valid_shard(path, 1)


def test_resume_when_the_server_ignores_range(server, tmp_path):
    server.script = ["truncate", "ignore-range"]
    path, _ = fetch(server, tmp_path, index=1)
    assert server.requests[1][1] is not None  # a Range was asked for, the server sent 200 + everything
    assert_clean_valid_shard(path, 1)  # and the partial bytes were not duplicated


def test_complete_part_file_gets_416_and_is_kept(server, tmp_path):
    name = index_to_filename(2)
    (tmp_path / (name + ".part")).write_bytes(server.files[name])  # e.g. interrupted just before the rename
    path, _ = fetch(server, tmp_path, index=2)
    assert server.requests[0][1] == f"bytes={len(server.files[name])}-"
    assert_clean_valid_shard(path, 2)


def test_interrupted_part_file_resumes_across_calls(server, tmp_path):
    server.script = ["truncate", "500", "500", "500"]
    with pytest.raises(DownloadError, match="bytes kept in"):
        fetch(server, tmp_path, index=0)
    part = tmp_path / (index_to_filename(0) + ".part")
    assert not (tmp_path / index_to_filename(0)).exists()
    kept = part.stat().st_size
    assert kept == len(server.files[index_to_filename(0)]) // 2
    path, _ = fetch(server, tmp_path, index=0)  # the next run picks up the .part
    assert server.requests[-1][1] == f"bytes={kept}-"
    assert_clean_valid_shard(path, 0)


def test_missing_shard_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server, tmp_path, index=5)
    assert len(server.requests) == 1


def test_a_file_that_is_not_parquet_is_never_renamed(server, tmp_path):
    with pytest.raises(DownloadError, match="not a readable parquet"):
        fetch(server, tmp_path, index=9, attempts=2)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_says_offline_and_points_to_the_embedded_corpus(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="embedded offline corpus") as info:
        download_single_file(0, data_dir=tmp_path, base_url=f"http://127.0.0.1:{port}", attempts=2, backoff_s=0.01)
    assert info.value.offline


def run_dataset_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "nanochat.dataset", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_cli_downloads_in_parallel_with_the_base_url_from_the_environment(server, tmp_path):
    result = run_dataset_cli("-n", "3", "-w", "2", "--data-dir", str(tmp_path), env={"NANOCHAT_DATA_URL": server.url})
    assert result.returncode == 0, result.stderr
    assert "downloaded 3 shard(s)" in result.stdout
    for i in range(3):
        assert_clean_valid_shard(tmp_path / index_to_filename(i), i)
    again = run_dataset_cli("-n", "3", "--data-dir", str(tmp_path), "--base-url", server.url)
    assert again.returncode == 0 and "3 of 3 shards already" in again.stdout


def test_cli_offline_is_a_clear_message(tmp_path):
    result = run_dataset_cli("-n", "2", "--data-dir", str(tmp_path), "--base-url", "http://nonexistent.invalid")
    assert result.returncode == 1
    assert "could not reach nonexistent.invalid" in result.stderr and "nothing to do for a first run" in result.stderr
    assert "Traceback" not in result.stderr
    bad = run_dataset_cli("-n", "0")
    assert bad.returncode == 2 and "positive number" in bad.stderr


# --- reading the shards --------------------------------------------------------------------------------------


@pytest.fixture
def shards_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    data = tmp_path / "base_data"
    data.mkdir()
    for i in range(3):
        (data / index_to_filename(i)).write_bytes(make_shard_bytes(shard_docs(i, n=10), row_group_size=3))
    (data / "shard_00003.parquet.part").write_bytes(b"partial")  # never listed
    return data


def test_splits_and_row_group_striding(shards_dir):
    assert [Path(p).name for p in dataset.list_parquet_files()] == [index_to_filename(i) for i in range(3)]
    train = [d for batch in dataset.parquets_iter_batched("train") for d in batch]
    assert train == shard_docs(0, 10) + shard_docs(1, 10)
    assert [d for b in dataset.parquets_iter_batched("val") for d in b] == shard_docs(2, 10)
    # 10 docs in row groups of 3: groups of sizes 3, 3, 3, 1 per file
    assert [len(b) for b in dataset.parquets_iter_batched("train")] == [3, 3, 3, 1, 3, 3, 3, 1]
    rank0 = list(dataset.row_groups("train", 0, 2, source="shards"))
    rank1 = list(dataset.row_groups("train", 1, 2, source="shards"))
    assert [(p, r) for p, r, _ in rank0] == [(0, 0), (0, 2), (1, 0), (1, 2)]
    assert [(p, r) for p, r, _ in rank1] == [(0, 1), (0, 3), (1, 1), (1, 3)]
    assert sorted(d for _, _, b in rank0 + rank1 for d in b) == sorted(train)
    resumed = list(dataset.row_groups("train", 1, 2, source="shards", resume_at=(1, 1)))
    assert [(p, r) for p, r, _ in resumed] == [(1, 1), (1, 3)]
    with pytest.raises(ValueError, match="does not belong to rank"):
        list(dataset.row_groups("train", 1, 2, source="shards", resume_at=(0, 2)))


def test_auto_source_and_split_errors(shards_dir):
    assert dataset.resolve_source("auto") == "shards"
    for p in list(shards_dir.glob("*.parquet"))[1:]:
        p.unlink()
    with pytest.raises(ValueError, match="at least two"):
        next(dataset.documents_batched("train"))
    for p in shards_dir.glob("*.parquet"):
        p.unlink()
    assert dataset.resolve_source("auto") == "embedded"
    assert next(dataset.documents_batched("val")) == [embedded_corpus.split("val")[0]]
    with pytest.raises(FileNotFoundError, match="no parquet shards"):
        next(dataset.documents_batched("train", source="shards"))
    with pytest.raises(ValueError, match="unknown source"):
        dataset.resolve_source("web")
    with pytest.raises(ValueError, match="unknown split"):
        next(dataset.documents_batched("test"))


def test_damaged_shard_is_a_clear_error(shards_dir):
    (shards_dir / index_to_filename(0)).write_bytes(b"garbage")
    with pytest.raises(dataset.DataError, match="cannot read .*shard_00000.parquet as parquet"):
        next(dataset.parquets_iter_batched("train"))


def corrupt_row_group(path: Path, rg_idx: int) -> None:
    """Overwrite the inside of one row group's column chunk (page headers and compressed data) with junk."""
    data = bytearray(path.read_bytes())
    chunk = pq.ParquetFile(path).metadata.row_group(rg_idx).column(0)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    for k in range(start + 2, start + chunk.total_compressed_size - 2):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupt_row_group_names_the_file_and_the_row_group(shards_dir):
    path = shards_dir / index_to_filename(1)
    corrupt_row_group(path, 2)
    batches = dataset.parquets_iter_batched("train")
    good = [next(batches) for _ in range(6)]  # file 0's four row groups and file 1's first two read fine
    assert [len(b) for b in good] == [3, 3, 3, 1, 3, 3]
    with pytest.raises(dataset.DataError, match=f"{path}: row group 2 is unreadable .*download it again"):
        next(batches)


def test_a_shard_without_a_text_column_is_a_clear_error(shards_dir):
    path = shards_dir / index_to_filename(0)
    pq.write_table(pa.table({"content": ["a", "b"], "id": [1, 2]}), path)
    with pytest.raises(dataset.DataError, match=f"{path} has no 'text' column \\(its columns: content, id\\)"):
        next(dataset.parquets_iter_batched("train"))
    pq.write_table(pa.table({"text": [1, 2]}), path)
    with pytest.raises(dataset.DataError, match="'text' column holds int64, not strings"):
        next(dataset.parquets_iter_batched("train"))


# --- the embedded corpus -------------------------------------------------------------------------------------


def test_embedded_corpus_is_real_and_split():
    docs = embedded_corpus.documents()
    stats = embedded_corpus.describe()
    assert stats["total"]["mb"] > 2.5 and stats["total"]["documents"] > 800
    assert {"pydoc_topics", "stdlib_docstrings", "stdlib_comments"} <= set(stats)
    assert all(d.strip() for d in docs) and len(set(docs)) == len(docs)
    train, val = embedded_corpus.split("train"), embedded_corpus.split("val")
    assert val == docs[::20] and len(train) + len(val) == len(docs)
    assert not set(train) & set(val)
    sources_in_val = {r.source for r in embedded_corpus.records()[::20]}
    assert {"pydoc_topics", "stdlib_docstrings", "stdlib_comments"} <= sources_in_val
    assert any("lambda" in d for d in docs)  # the language reference topics are in there
    assert any(d.startswith("json\n\nJSON (JavaScript Object Notation)") for d in docs)  # a module docstring
    with pytest.raises(ValueError, match="unknown split"):
        embedded_corpus.split("dev")


def test_embedded_corpus_build_is_deterministic_and_adds_only_the_extra_folder_given(tmp_path, monkeypatch):
    """Built twice from the same files, the corpus is identical; an extra folder's Markdown comes in without its
    front matter, and only when the caller passes it (nanochat never looks for the lessons by itself).

    (On a subset of the standard library, so the test is quick.)"""
    extra = tmp_path / "lessons"
    extra.mkdir()
    (extra / "01-one.md").write_text("---\ntitle: One\nteaches: [norm]\n---\n# One\n\nLesson one body.")
    (extra / "02-two.md").write_text("# Two\n\nNo front matter here.")
    subset = [f for f in embedded_corpus._stdlib_files() if f.parent == embedded_corpus._stdlib_dir()][:40]
    monkeypatch.setattr(embedded_corpus, "_stdlib_files", lambda: subset)
    first, second = embedded_corpus.build(extra), embedded_corpus.build(extra)
    assert first == second and len(first) > 40
    extra_texts = sorted(d.text for d in first if d.source == "extra")
    assert extra_texts == ["# One\n\nLesson one body.", "# Two\n\nNo front matter here."]
    assert {d.source for d in first} == {"pydoc_topics", "stdlib_docstrings", "stdlib_comments", "extra"}
    monkeypatch.chdir(tmp_path)  # a lessons/ folder right here is not picked up unasked
    assert {d.source for d in embedded_corpus.build()} == {"pydoc_topics", "stdlib_docstrings", "stdlib_comments"}


def test_embedded_corpus_cache_file_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    monkeypatch.setattr(embedded_corpus, "_DOCS", {})
    builds = []
    fake = [embedded_corpus.Document("pydoc_topics", "t", "some text"), embedded_corpus.Document("extra", "l", "more")]
    monkeypatch.setattr(embedded_corpus, "build", lambda extra_dir=None: builds.append(extra_dir) or fake)
    assert embedded_corpus.documents() == ["some text", "more"] and len(builds) == 1
    cache_files = list((tmp_path / "embedded_corpus").glob("corpus-*.json"))
    assert len(cache_files) == 1
    monkeypatch.setattr(embedded_corpus, "_DOCS", {})
    assert embedded_corpus.documents() == ["some text", "more"] and len(builds) == 1  # read back, not rebuilt
    cache_files[0].write_text("{damaged")
    monkeypatch.setattr(embedded_corpus, "_DOCS", {})
    assert embedded_corpus.documents() == ["some text", "more"] and len(builds) == 2  # a damaged cache is rebuilt
    embedded_corpus.documents(tmp_path)  # another extra folder: its own build and cache file, the first one kept
    assert builds[-1] == str(tmp_path.resolve()) and len(list((tmp_path / "embedded_corpus").glob("*.json"))) == 2


def test_front_matter_is_stripped():
    text = "---\ntitle: Attention\nteaches: [CausalSelfAttention.forward]\n---\n# Attention\n\nBody text."
    assert embedded_corpus.strip_front_matter(text) == "# Attention\n\nBody text."
    assert embedded_corpus.strip_front_matter("# No front matter") == "# No front matter"
