"""Test-wide set-up: every test session gets its own NANOCHAT_BASE_DIR, so nothing touches ~/.cache/nanochat.

The embedded-corpus tokenizer is trained once per session into that directory and reused by later tests
(subprocesses inherit the variable). Tests that need an empty base dir set their own with monkeypatch.
"""

import os

# The test models are tiny: one intra-op thread each is faster than threads fighting over 2 shared cores.
# Set before torch is imported so that subprocesses (torchrun, the workbench worker, scripts) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def nanochat_base_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("nanochat_base")
    old = os.environ.get("NANOCHAT_BASE_DIR")
    os.environ["NANOCHAT_BASE_DIR"] = str(base)
    yield base
    if old is None:
        os.environ.pop("NANOCHAT_BASE_DIR", None)
    else:
        os.environ["NANOCHAT_BASE_DIR"] = old


def pytest_generate_tests(metafunc):
    """A module that sets CHILD_STRATEGIES = ("fork", "spawn") runs its runner tests once per child strategy
    (workbench/check/spare.py): the warm spare is tested on Linux too, where fork is the default."""
    strategies = getattr(metafunc.module, "CHILD_STRATEGIES", None)
    if strategies and "child_strategy" in metafunc.fixturenames:
        metafunc.parametrize("child_strategy", strategies, scope="module")


@pytest.fixture(scope="module")
def child_strategy():
    """The check worker's child strategy: None is the platform's default (or $NANOCHAT_WORKBENCH_CHILD)."""
    return None


@pytest.fixture(scope="module")
def runner(request, child_strategy):
    """A warm check runner per test module; a module sets CHECK_TIMEOUT (seconds) to change the default 60."""
    from workbench.check.client import Runner

    r = Runner(timeout=getattr(request.module, "CHECK_TIMEOUT", 60), child=child_strategy)
    r.wait_ready()
    yield r
    r.close()


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> the path of a new file in this test's tmp_path."""
    def write(name: str, text: str):
        path = tmp_path / name
        path.write_text(text)
        return path
    return write
