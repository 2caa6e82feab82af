"""The web chat against a real uvicorn on a loopback port, with a real HTTP client (httpx) and a tiny random
checkpoint saved once per module: the event-stream format, every validation rule, 24 concurrent streams, a
client that disconnects mid-answer freeing its worker, a full queue answering 503, a failing request that leaves
the server up, loading/health, the command line, and UTF-8 safe decoding of split characters."""

import asyncio
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
import uvicorn

from nanochat.web.app import ServerInfo, create_app
from nanochat.web.load import choose_checkpoint, load_workers
from nanochat.web.schema import MAX_BODY_BYTES
from nanochat.web.stream import Kind, Piece, TextStream

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HI = [{"role": "user", "content": "Hello there"}]
# greedy: the module's random model then writes 2,500+ tokens without a stop token, seconds of work on a CPU
LONG = {"messages": HI, "max_tokens": 2000, "temperature": 0}
pytestmark = pytest.mark.timeout(300)


# ---------------------------------------------------------------------------------------------------------------
# a tiny checkpoint and live servers


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, nanochat_base_dir):
    """A base dir holding the session's tokenizer and a random depth-2 model saved as base and sft checkpoints."""
    import torch

    from nanochat.checkpoint_manager import checkpoints_dir, save_checkpoint
    from nanochat.gpt import GPT, GPTConfig
    from nanochat.tokenizer import get_tokenizer

    tokenizer = get_tokenizer()  # trained once into the session's base dir
    base = tmp_path_factory.mktemp("web_base")
    shutil.copytree(nanochat_base_dir / "tokenizer_embedded", base / "tokenizer_embedded")
    patch = pytest.MonkeyPatch()
    patch.setenv("NANOCHAT_BASE_DIR", str(base))
    # a context long enough that LONG (2,000 tokens) really takes seconds: a stop or a disconnect lands mid-answer
    config = GPTConfig(sequence_len=2048, vocab_size=tokenizer.get_vocab_size(), n_layer=2, n_head=2, n_kv_head=2,
                       n_embd=128)
    torch.manual_seed(0)
    model = GPT(config)
    with torch.no_grad():
        for p in model.parameters():  # random everywhere (init_weights zeroes the head: every token equally likely)
            p.normal_(0.0, 0.2)
    meta = {"model_config": dataclasses.asdict(config), "step": 3, "model_source": "reference"}
    for phase in ("base", "sft"):
        save_checkpoint(os.path.join(checkpoints_dir(phase), "d2"), 3, model.state_dict(), None, meta)
    yield base
    patch.undo()


class LiveServer:
    """uvicorn serving `app` on 127.0.0.1, any free port, in a thread of this process."""

    def __init__(self, app):
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), 30, "uvicorn to start")
        assert self.server.started, "uvicorn did not start"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, timeout=60)
        return self

    def wait_ready(self):
        wait_for(lambda: self.client.get("/health").status_code == 200, 60, "the model to load")
        return self

    def stats(self):
        return self.client.get("/stats").json()

    def __exit__(self, *exc):
        self.client.close()
        self.server.should_exit = True
        self.thread.join(20)


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


def serve_checkpoint(phase, workers, max_queue):
    checkpoint = choose_checkpoint(phase)
    info = ServerInfo(phase=checkpoint.phase, model_tag=checkpoint.model_tag, step=checkpoint.step, device="cpu")
    app = create_app(lambda: load_workers(checkpoint, "cpu", workers), info, max_queue=max_queue)
    return LiveServer(app)


@pytest.fixture(scope="module")
def server(base_dir):
    with serve_checkpoint("sft", workers=2, max_queue=64) as live:
        yield live.wait_ready()


def events_of(response):
    """The parsed `data:` events of a finished event-stream response; every line must be part of one."""
    events = []
    for block in response.text.split("\n\n"):
        if not block or block.startswith(": "):  # end of stream, or a comment (sent while waiting for a worker)
            continue
        assert block.startswith("data: ") and "\n" not in block, f"not a single data line: {block!r}"
        events.append(json.loads(block[len("data: "):]))
    return events


def post(live, body, **kw):
    return live.client.post("/chat/completions", content=body if isinstance(body, (bytes, str)) else json.dumps(body),
                            **kw)


# ---------------------------------------------------------------------------------------------------------------
# the stream


def test_page_is_one_self_contained_file(server):
    r = server.client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "<style>" in page and "<script>" in page and 'id="stop"' in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page must not load anything from elsewhere"


def test_stream_is_nanochats_protocol(server):
    r = post(server, {"messages": HI, "max_tokens": 12, "temperature": 0.7, "top_k": 20})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = events_of(r)
    *tokens, done = events
    assert done["done"] is True and done["finish"] in ("done", "length")
    assert 1 <= done["tokens"] <= 12
    assert tokens, "no token events"
    for event in tokens:
        assert set(event) <= {"token", "gpu", "kind"}
        assert isinstance(event["token"], str) and event["token"]
        assert event["gpu"] in (0, 1)
        assert event.get("kind", "tool_call") in ("tool_call", "tool_output")  # absent for plain text


def test_health_and_stats(server):
    h = server.client.get("/health")
    assert h.status_code == 200
    body = h.json()
    assert body["status"] == "ok" and body["ready"] and body["model_loaded"]
    described = (body["phase"], body["model_tag"], body["step"], body["mode"], body["workers"])
    assert described == ("sft", "d2", 3, "chat", 2)
    before = server.stats()
    assert before["total_workers"] == 2 and before["queue_limit"] == 64
    assert [w["gpu_id"] for w in before["workers"]] == [0, 1]
    post(server, {"messages": HI, "max_tokens": 3})
    after = server.stats()
    assert after["requests_served"] == before["requests_served"] + 1
    assert after["busy_workers"] == 0 and after["available_workers"] == 2 and after["queue_length"] == 0


def test_defaults_and_edges_of_every_range_are_accepted(server):
    system = [{"role": "system", "content": "Be brief."}] + HI
    history = HI + [{"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "é 日本 🎉"}]
    for body in ({"messages": HI, "max_tokens": 1}, {"messages": system, "temperature": 0, "top_k": 0, "max_tokens": 2},
                 {"messages": history, "temperature": 2, "top_k": 200, "max_tokens": 2},
                 {"messages": HI, "temperature": 1, "top_k": None, "max_tokens": 1}):
        r = post(server, body)
        assert r.status_code == 200, r.text
        assert events_of(r)[-1]["done"] is True


# ---------------------------------------------------------------------------------------------------------------
# validation: every rule answers 400 naming the field


def msgs(*roles, content="hi"):
    return [{"role": role, "content": content} for role in roles]


BAD_REQUESTS = {
    "malformed JSON": (b'{"messages": [', "body"),
    "not JSON at all": (b"hello", "body"),
    "empty body": (b"", "body"),
    "body is a list": (b"[1, 2]", "body"),
    "messages missing": ({"temperature": 1}, "messages"),
    "messages not a list": ({"messages": "hi"}, "messages"),
    "no messages": ({"messages": []}, "messages"),
    "501 messages": ({"messages": msgs(*(["user", "assistant"] * 250), "user")}, "messages"),
    "message not an object": ({"messages": ["hi"]}, "messages[0]"),
    "role missing": ({"messages": [{"content": "hi"}]}, "messages[0].role"),
    "unknown role": ({"messages": msgs("bot")}, "messages[0].role"),
    "content missing": ({"messages": [{"role": "user"}]}, "messages[0].content"),
    "content a number": ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    "content a list": ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
                       "messages[0].content"),
    "content blank": ({"messages": msgs("user", content="  \n")}, "messages[0].content"),
    "content 8001 characters": ({"messages": msgs("user", content="x" * 8001)}, "messages[0].content"),
    "32001 characters in all": ({"messages": msgs("user", "assistant", "user", "assistant", content="x" * 8000)
                                 + msgs("user", content="x")}, "messages"),
    "two user turns in a row": ({"messages": msgs("user", "user")}, "messages[1].role"),
    "starts with the assistant": ({"messages": msgs("assistant", "user")}, "messages[0].role"),
    "a second system message": ({"messages": msgs("system", "user", "system")}, "messages[2].role"),
    "system message only": ({"messages": msgs("system")}, "messages"),
    "ends with the assistant": ({"messages": msgs("user", "assistant")}, "messages"),
    "temperature a string": ({"messages": HI, "temperature": "0.5"}, "temperature"),
    "temperature below 0": ({"messages": HI, "temperature": -0.1}, "temperature"),
    "temperature above 2": ({"messages": HI, "temperature": 2.01}, "temperature"),
    "top_k a float": ({"messages": HI, "top_k": 1.5}, "top_k"),
    "top_k a boolean": ({"messages": HI, "top_k": True}, "top_k"),
    "top_k below 0": ({"messages": HI, "top_k": -1}, "top_k"),
    "top_k above 200": ({"messages": HI, "top_k": 201}, "top_k"),
    "max_tokens 0": ({"messages": HI, "max_tokens": 0}, "max_tokens"),
    "max_tokens above 4096": ({"messages": HI, "max_tokens": 4097}, "max_tokens"),
    "max_tokens a string": ({"messages": HI, "max_tokens": "10"}, "max_tokens"),
    "max_tokens a list": ({"messages": HI, "max_tokens": [10]}, "max_tokens"),
    "body over 1 MiB": (b'{"messages": [], "pad": "' + b"x" * MAX_BODY_BYTES + b'"}', "body"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_400_naming_the_field(server, case):
    body, field = BAD_REQUESTS[case]
    served = server.stats()["requests_served"]
    r = post(server, body)
    assert r.status_code == 400, r.text
    answer = r.json()
    assert answer["field"] == field, answer
    assert isinstance(answer["error"], str) and answer["error"]
    assert server.stats()["requests_served"] == served, "a rejected request must not reach a worker"


# ---------------------------------------------------------------------------------------------------------------
# the pool


async def stream_many(url, n, max_tokens):
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        async def one(i):
            body = {"messages": [{"role": "user", "content": f"Question number {i}"}], "max_tokens": max_tokens}
            r = await client.post("/chat/completions", json=body)
            return r.status_code, r.text
        return await asyncio.gather(*(one(i) for i in range(n)))


def test_24_concurrent_streams_all_complete(server):
    served = server.stats()["requests_served"]
    results = asyncio.run(stream_many(server.url, 24, max_tokens=12))
    gpus = set()
    for status, text in results:
        assert status == 200, text
        events = [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: ")]
        assert events[-1]["done"] is True and "error" not in events[-1]
        gpus |= {e["gpu"] for e in events[:-1]}
    assert gpus == {0, 1}, "both workers should have served"
    stats = server.stats()
    assert stats["requests_served"] == served + 24
    assert stats["busy_workers"] == 0 and stats["queue_length"] == 0


def test_disconnect_mid_stream_stops_the_generation_and_frees_the_worker(server, caplog):
    caplog.set_level(logging.INFO, logger="nanochat.web")
    served = server.stats()["requests_served"]
    with server.client.stream("POST", "/chat/completions", json=LONG) as r:
        assert r.status_code == 200
        lines = r.iter_lines()  # kept: dropping a half-read iterator closes the connection
        assert next(lines).startswith("data: {\"token\"")  # a worker is generating
        assert server.stats()["busy_workers"] == 1
    # the connection is closed here, ~2000 tokens (seconds of work) before the answer would end
    wait_for(lambda: server.stats()["requests_served"] == served + 1, 10, "the worker to be freed")
    assert server.stats()["busy_workers"] == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "nanochat.web" and "stopped" in r.getMessage()]
    assert lines, "the stopped request should be logged"
    tokens = int(re.search(r"(\d+) tokens in", lines[-1]).group(1))
    assert tokens < 2000
    assert events_of(post(server, {"messages": HI, "max_tokens": 2}))[-1]["done"] is True


def test_full_queue_answers_503_with_retry_after(base_dir):
    with serve_checkpoint("sft", workers=1, max_queue=1) as live:
        live.wait_ready()
        with live.client.stream("POST", "/chat/completions", json=LONG) as first:
            lines = first.iter_lines()  # kept: dropping a half-read iterator closes the connection
            assert next(lines).startswith("data: {\"token\"")  # the only worker is busy
            with live.client.stream("POST", "/chat/completions", json={"messages": HI, "max_tokens": 3}) as second:
                assert second.status_code == 200
                wait_for(lambda: live.stats()["queue_length"] == 1, 10, "the second request to queue")
                third = post(live, {"messages": HI, "max_tokens": 3})
                assert third.status_code == 503
                assert int(third.headers["Retry-After"]) > 0
                assert "busy" in third.json()["error"]
                first.close()  # the queued request gets the worker and finishes
                second.read()
                assert events_of(second)[-1]["done"] is True


def test_a_failing_request_is_reported_and_the_server_keeps_serving(server, caplog):
    caplog.set_level(logging.INFO, logger="nanochat.web")
    words = " ".join(f"w{i}x{i * 7919 % 1000}" for i in range(3000))[:6000]
    long = msgs("user", "assistant", "user", "assistant", "user", content=words)  # past the 2560-position context
    r = post(server, {"messages": long, "max_tokens": 5})
    assert r.status_code == 200
    events = events_of(r)
    assert "context" in events[0]["error"] and events[-1]["done"] is True
    assert any("error" in rec.getMessage() for rec in caplog.records if rec.name == "nanochat.web")
    assert events_of(post(server, {"messages": HI, "max_tokens": 2}))[-1]["done"] is True
    assert server.stats()["busy_workers"] == 0


def test_health_says_loading_then_ready_and_reports_a_failed_load(base_dir):
    loaded = threading.Event()
    checkpoint = choose_checkpoint("base")
    info = ServerInfo(phase="base", model_tag="d2", step=3, device="cpu")

    def slow_load():
        loaded.wait(30)
        return load_workers(checkpoint, "cpu", 1)

    with LiveServer(create_app(slow_load, info)) as live:
        h = live.client.get("/health")
        assert h.status_code == 503 and h.json()["status"] == "loading" and not h.json()["model_loaded"]
        busy = post(live, {"messages": HI})
        assert busy.status_code == 503 and "Retry-After" in busy.headers
        loaded.set()
        live.wait_ready()
        assert live.client.get("/health").json()["mode"] == "completion"
        assert events_of(post(live, {"messages": HI, "max_tokens": 2}))[-1]["done"] is True

    def broken_load():
        raise OSError("disk on fire")

    with LiveServer(create_app(broken_load, info)) as live:
        wait_for(lambda: live.client.get("/health").json()["status"] == "error", 10, "the failed load")
        assert "disk on fire" in live.client.get("/health").json()["error"]
        assert post(live, {"messages": HI}).status_code == 503


# ---------------------------------------------------------------------------------------------------------------
# the command line


def run_cli(args, base_dir, **kw):
    env = dict(os.environ, NANOCHAT_BASE_DIR=str(base_dir))
    return subprocess.Popen([sys.executable, "-m", "nanochat.scripts.chat_web", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.slow
def test_cli_serves_a_base_checkpoint_on_loopback(base_dir):
    proc = run_cli(["-i", "base", "--port", "0"], base_dir)
    try:
        url = None
        for line in proc.stdout:
            m = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
                break
        assert url, "the server never said where it listens"
        with httpx.Client(base_url=url, timeout=60) as client:
            wait_for(lambda: client.get("/health").status_code == 200, 60, "the model to load")
            assert client.get("/health").json()["phase"] == "base"
            r = client.post("/chat/completions", json={"messages": HI, "max_tokens": 4})
            assert events_of(r)[-1]["done"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert re.search(r"request 1 worker 0: \w+, \d+ prompt tokens, \d+ tokens in [\d.]+ s \([\d.]+ tok/s\)", out), out
    assert "Traceback" not in out


def test_cli_without_a_checkpoint_is_one_clear_line(base_dir):
    proc = run_cli(["-i", "rl"], base_dir)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert out.startswith("chat_web: error: no checkpoint") and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["-i", "sft", "-s", "99"], "no step 99 in"),
    (["-i", "sft", "-g", "d9"], "no checkpoint directory"),
    (["--port", "70000"], "expected a port number from 0 to 65535, got 70000"),
    (["-w", "0"], "expected a positive integer"),
    (["-s", "-1"], "expected a number >= 0"),
    (["-i", "final"], "invalid choice"),
])
def test_cli_usage_errors_exit_2(base_dir, capsys, args, message):
    from nanochat.scripts import chat_web

    try:
        code = chat_web.main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_phases_are_the_checkpoint_phases():
    from nanochat.checkpoint_manager import PHASES
    from nanochat.scripts.chat_web import PHASES as CLI_PHASES

    assert CLI_PHASES == PHASES


def test_exposed_host_is_announced(base_dir, monkeypatch, caplog):
    from nanochat.scripts import chat_web

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    assert chat_web.main(["--host", "0.0.0.0", "--port", "8123"]) == 0
    assert calls[0]["host"] == "0.0.0.0" and calls[0]["port"] == 8123
    assert any("exposes this server" in r.getMessage() for r in caplog.records)
    calls.clear()
    caplog.clear()
    assert chat_web.main([]) == 0
    assert calls[0]["host"] == "127.0.0.1"
    assert not any("exposes" in r.getMessage() for r in caplog.records)


def test_workbench_serve_picks_the_newest_chat_checkpoint(base_dir, monkeypatch, capsys):
    from workbench.cli import main

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append((app, kw)))
    assert main(["serve", "--port", "0", "-w", "2"]) == 0
    app, kw = apps[0]
    assert (app.state.info.phase, app.state.info.model_tag, app.state.info.step) == ("sft", "d2", 3)
    assert kw["host"] == "127.0.0.1" and kw["port"] == 0
    assert main(["serve", "-i", "base"]) == 0
    assert apps[1][0].state.info.mode == "completion"
    assert main(["serve", "-i", "mid"]) == 2
    assert capsys.readouterr().err.startswith("nanochat-workbench serve: error: no checkpoint")


# ---------------------------------------------------------------------------------------------------------------
# UTF-8 and calculator pieces


def test_characters_split_across_tokens_come_out_whole(base_dir):
    from nanochat.tokenizer import get_tokenizer

    tokenizer = get_tokenizer()
    text = "é日本🎉 ok"
    stream = TextStream(tokenizer)
    pieces = []
    for byte in text.encode("utf-8"):  # one byte per token: the worst split there is
        token = tokenizer.enc.encode_single_token(bytes([byte]))
        pieces += stream.feed(token)
    pieces += stream.finish()
    assert "".join(p.text for p in pieces) == text
    assert all("\ufffd" not in p.text for p in pieces)
    assert [p.text for p in pieces][:4] == ["é", "日", "本", "🎉"]


def test_calculator_calls_are_pieces_of_their_own(base_dir):
    from nanochat.tokenizer import get_tokenizer

    tokenizer = get_tokenizer()
    special = tokenizer.encode_special
    ids = (tokenizer.encode("It is ") + [special("<|python_start|>")] + tokenizer.encode("12*7")
           + [special("<|python_end|>"), special("<|output_start|>")] + tokenizer.encode("84")
           + [special("<|output_end|>")] + tokenizer.encode(" apples."))
    stream = TextStream(tokenizer)
    pieces = [p for token in ids for p in stream.feed(token)] + stream.finish()
    merged = []
    for p in pieces:
        if merged and merged[-1].kind == p.kind:
            merged[-1] = Piece(p.kind, merged[-1].text + p.text)
        else:
            merged.append(p)
    assert merged == [Piece(Kind.TEXT, "It is "), Piece(Kind.TOOL_CALL, "12*7"), Piece(Kind.TOOL_OUTPUT, "84"),
                      Piece(Kind.TEXT, " apples.")]


# ---------------------------------------------------------------------------------------------------------------
# the page in a real browser (Debian's chromium + chromium-driver, through selenium)


@pytest.fixture(scope="module")
def browser():
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("chromium and chromedriver are not installed (Debian: apt install chromium chromium-driver), "
                    "so the page is not tested in a browser")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)  # a given driver: nothing downloaded
    yield driver
    driver.quit()


def test_page_streams_an_answer_and_stops_it(server, browser, caplog):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    caplog.set_level(logging.INFO, logger="nanochat.web")
    wait = WebDriverWait(browser, 30, poll_frequency=0.05)
    find = browser.find_element
    browser.get(server.url)
    wait.until(lambda d: "sft d2 step 3" in find(By.ID, "model").text)
    browser.execute_script("const t = document.getElementById('temperature'); t.value = '0';"
                           "t.dispatchEvent(new Event('input'));")  # greedy: a long answer (see LONG)
    find(By.ID, "max-tokens").clear()
    find(By.ID, "max-tokens").send_keys("2000")
    served = server.stats()["requests_served"]
    find(By.ID, "input").send_keys("Hello there", Keys.ENTER)

    assert wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.user"))[0].text == "Hello there"
    answer = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".msg.assistant.streaming"))
    first = len(wait.until(lambda d: answer.text))
    wait.until(lambda d: len(answer.text) > first + 20)  # more tokens keep arriving into the same answer
    assert "streaming" in answer.get_attribute("class")
    stop = find(By.ID, "stop")
    assert stop.is_displayed() and not find(By.ID, "send").is_displayed()
    stop.click()

    wait.until(lambda d: "streaming" not in answer.get_attribute("class"))
    assert answer.find_element(By.CLASS_NAME, "meta").text == "stopped"
    assert find(By.ID, "send").is_displayed() and not stop.is_displayed()
    wait_for(lambda: server.stats()["requests_served"] == served + 1, 10, "the stopped generation to end")
    line = [r.getMessage() for r in caplog.records if r.name == "nanochat.web" and " stopped, " in r.getMessage()][-1]
    assert int(re.search(r"(\d+) tokens in", line).group(1)) < 2000

    find(By.ID, "new").click()
    assert not browser.find_elements(By.CSS_SELECTOR, ".msg")


def test_bench_web_prints_its_figures(server, capsys):
    from nanochat.scripts import bench_web

    assert bench_web.main(["--url", server.url, "--streams", "3", "--sequential", "1", "--max-tokens", "4"]) == 0
    out = capsys.readouterr().out
    for figure in ("time to first token", "tok/s per worker", "3 concurrent streams", "throughput"):
        assert figure in out
