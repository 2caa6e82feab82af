"""The sandbox for model-written code: ordinary programs run, hostile ones are contained.

Every hostile program runs for real in a subprocess; each test checks that the caller survives, that the call
returns in bounded time, that the failure is reported for what it is, and that nothing is left behind.
"""

import os
import socket
import tempfile
import threading
import time

import pytest

from nanochat.execution import execute_code


@pytest.fixture(autouse=True)
def own_tmp(tmp_path, monkeypatch):
    """Each test's sandboxes live under a fresh temp root, so leftovers can be counted."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root
    assert list(root.iterdir()) == [], "the sandbox left files behind"


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_ordinary_program_runs_and_prints():
    result = execute_code("import math\nprint(math.factorial(5))\nassert sum(range(4)) == 6")
    assert result.success and result.error is None
    assert result.stdout == "120\n"


def test_exception_is_reported_with_the_programs_traceback():
    result = execute_code("def f():\n    return 1 / 0\nf()")
    assert not result.success and not result.timeout
    assert result.error == "ZeroDivisionError: division by zero"
    assert 'program.py", line 2, in f' in result.stderr
    assert "execution.py" not in result.stderr


def test_exiting_early_is_not_success():
    for code in ("import sys\nsys.exit(0)\nassert False", "raise SystemExit"):
        result = execute_code(code)
        assert not result.success and "exit" in result.error


def test_infinite_loop_is_stopped_at_the_timeout():
    start = time.monotonic()
    result = execute_code("import os\nprint(os.getpid(), flush=True)\nwhile True:\n    pass", timeout=1.0)
    assert time.monotonic() - start < 4
    assert result.timeout and not result.success
    assert not pid_alive(int(result.stdout.split()[0]))


def test_sleeping_program_is_stopped_too():
    result = execute_code("import time\ntime.sleep(60)", timeout=0.5)
    assert result.timeout


def test_memory_bomb_hits_the_limit():
    result = execute_code("blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))",
                          maximum_memory_bytes=256 * 2**20)
    assert result.memory_exceeded and not result.success and not result.timeout


def test_fork_bomb_is_contained():
    code = "import os\nwhile True:\n    os.fork()"
    result = execute_code(code, timeout=2.0)
    assert not result.success and "fork is disabled" in result.error
    code = "import subprocess\nsubprocess.Popen(['sleep', '100'])"
    assert "disabled" in execute_code(code).error
    code = "import multiprocessing\nmultiprocessing.Process(target=print).start()"
    assert not execute_code(code).success


@pytest.mark.parametrize("code", [
    "import os\nos.kill(os.getppid(), 9)",
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
    "import posix\nposix.kill(posix.getppid(), 9)",
    "import ctypes\nctypes.CDLL(None).kill(__import__('os').getppid(), 9)",
    "import os\nos.killpg(0, 9)",
])
def test_killing_the_parent_fails(code):
    result = execute_code(code)
    assert not result.success
    assert os.getpid() and threading.current_thread().is_alive()  # we are still here


def test_files_outside_the_directory_are_safe(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    attempts = [
        f"import os\nos.remove({str(victim)!r})",
        f"import os\nos.unlink({str(victim)!r})",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        f"open({str(victim)!r}, 'w').write('gone')",
        f"import pathlib\npathlib.Path({str(victim)!r}).write_text('gone')",
        f"import os\nos.open({str(victim)!r}, os.O_WRONLY | os.O_TRUNC)",
        f"import os\nos.rename({str(victim)!r}, 'stolen')",
        f"import os\nos.system('rm -f {victim}')",
        "import os\nos.chdir('/')",
    ]
    for code in attempts:
        result = execute_code(code)
        assert not result.success, code
        assert "PermissionError" in result.error, (code, result.error)
    assert victim.read_text() == "precious"


def test_writing_inside_its_own_directory_works():
    code = "with open('notes.txt', 'w') as f:\n    f.write('hi')\nprint(open('notes.txt').read())"
    assert execute_code(code).stdout == "hi\n"


def test_no_sockets():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        for code in (f"import socket\nsocket.create_connection(('127.0.0.1', {port}))",
                     f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/')"):
            result = execute_code(code)
            assert not result.success
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()  # nobody ever connected
    finally:
        server.close()


def test_output_flood_is_capped_and_stopped():
    start = time.monotonic()
    result = execute_code("while True:\n    print('x' * 10000)", timeout=1.0, max_output_bytes=4096)
    assert result.timeout and time.monotonic() - start < 4
    assert result.stdout.startswith("x" * 4096)
    assert "output truncated" in result.stdout and len(result.stdout) < 4200


def test_big_file_is_refused():
    code = "chunk = b'0' * 2**20\nwith open('big', 'wb') as f:\n    for _ in range(100):\n        f.write(chunk)"
    result = execute_code(code, timeout=5.0)
    assert not result.success and not result.memory_exceeded
    assert "SIGXFSZ" in result.error or "File too large" in result.error


def test_parallel_calls_stay_apart():
    results = [None] * 6

    def run(i):
        results[i] = execute_code(f"print({i} * 2)")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.stdout for r in results] == [f"{i * 2}\n" for i in range(6)]
