"""`python -m nanochat.tasks.download` against a loopback HTTP server laid out like the hub, and offline."""

import functools
import http.server
import os
import subprocess
import sys
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fixtures.evals.layout import read_fixture
from nanochat.tasks.data import SOURCES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def hub(tmp_path):
    """A server on 127.0.0.1 holding GSM8K's two files at the hub's paths."""
    root = tmp_path / "hub"
    for remote in SOURCES["gsm8k"].values():
        path = root / remote
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(read_fixture("gsm8k.jsonl")), path)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def download(args, base):
    env = dict(os.environ, NANOCHAT_BASE_DIR=str(base), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    return subprocess.run([sys.executable, "-m", "nanochat.tasks.download", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def test_download_then_load(hub, tmp_path):
    base = tmp_path / "base"
    result = download(["gsm8k", "--base-url", hub], base)
    assert result.returncode == 0, result.stderr
    assert (base / "tasks" / "gsm8k" / "test.parquet").is_file()
    again = download(["gsm8k", "--base-url", hub], base)
    assert again.returncode == 0 and "already there" in again.stdout


def test_offline_download_says_so(tmp_path):
    result = download(["gsm8k", "--base-url", "http://127.0.0.1:9", "--attempts", "1"], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "gsm8k/" in result.stderr
