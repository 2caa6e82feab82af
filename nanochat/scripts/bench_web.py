"""Measure the web chat: time to first token, tokens per second of one worker, and throughput under concurrency.

    python -m nanochat.scripts.bench_web -i base                       # starts a server on the checkpoint
    python -m nanochat.scripts.bench_web -i base --workers 2 --streams 24 --max-tokens 64
    python -m nanochat.scripts.bench_web --url http://127.0.0.1:8000  # a server that is already running

First a few requests one after another (an idle server: time to first token and tok/s of one stream, measured
by the client from the POST to the first and the last token event), then --streams requests at once (time to
first token now includes waiting for a free worker; throughput is all tokens over the wall-clock time).
"""

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial

from nanochat.common import HelpFormatter, positive_int
from nanochat.scripts.chat_web import add_server_arguments

PROMPT = "Tell me a story about a small robot who learns to paint."


@dataclass
class Stream:
    ttft: float  # seconds from the POST to the first token event
    seconds: float  # seconds from the POST to the done event
    tokens: int  # what the server counted
    decode_rate: float  # tokens per second after the first one


async def stream_once(client, max_tokens: int) -> Stream:
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens}
    start = time.perf_counter()
    first = None
    async with client.stream("POST", "/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise SystemExit(f"error: the server answered {response.status_code}: {await response.aread()}")
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[len("data: "):])
            if "token" in event and first is None:
                first = time.perf_counter()
            if event.get("done"):
                end = time.perf_counter()
                first = first or end
                rate = (event["tokens"] - 1) / (end - first) if event["tokens"] > 1 and end > first else 0.0
                return Stream(first - start, end - start, event["tokens"], rate)
    raise SystemExit("error: the stream ended without a done event")


async def measure(url: str, warmup: int, sequential: int, streams: int, max_tokens: int):
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=streams + 4)) as c:
        for _ in range(warmup):
            await stream_once(c, 8)
        one_by_one = [await stream_once(c, max_tokens) for _ in range(sequential)]
        start = time.perf_counter()
        together = await asyncio.gather(*(stream_once(c, max_tokens) for _ in range(streams)))
        wall = time.perf_counter() - start
        stats = (await c.get("/stats")).json()
    return one_by_one, together, wall, stats


def quantile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(one_by_one: list[Stream], together: list[Stream], wall: float, stats: dict, max_tokens: int):
    ms = 1000
    print(f"workers: {stats['total_workers']} ({', '.join(sorted({w['device'] for w in stats['workers']}))}), "
          f"max_tokens {max_tokens}")
    print(f"one stream at a time ({len(one_by_one)} requests):")
    print(f"  time to first token  median {statistics.median(s.ttft for s in one_by_one) * ms:.0f} ms")
    print(f"  tok/s per worker     median {statistics.median(s.decode_rate for s in one_by_one):.1f} "
          f"(decode, after the first token)")
    tokens = sum(s.tokens for s in together)
    ttfts = [s.ttft for s in together]
    print(f"{len(together)} concurrent streams:")
    print(f"  all done in          {wall:.2f} s, {tokens} tokens")
    print(f"  throughput           {tokens / wall:.1f} tok/s in all")
    print(f"  time to first token  median {statistics.median(ttfts) * ms:.0f} ms, "
          f"p95 {quantile(ttfts, 0.95) * ms:.0f} ms, max {max(ttfts) * ms:.0f} ms (includes waiting for a worker)")


def start_server(args) -> tuple[str, object]:
    """A server on a free loopback port in this process, once its model is loaded; returns (url, server)."""
    import httpx
    import uvicorn

    from nanochat.common import autodetect_device_type
    from nanochat.web.app import ServerInfo, create_app
    from nanochat.web.load import choose_checkpoint, load_workers

    device_type = autodetect_device_type(args.device_type or None)
    checkpoint = choose_checkpoint(args.phase, args.model_tag, args.step)
    info = ServerInfo(checkpoint.phase, checkpoint.model_tag, checkpoint.step, device_type)
    app = create_app(partial(load_workers, checkpoint, device_type, args.workers), info,
                     max_queue=max(args.max_queue, args.streams))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    while httpx.get(f"{url}/health").status_code != 200:
        time.sleep(0.1)
    print(f"serving {checkpoint.phase} {checkpoint.model_tag} step {checkpoint.step} at {url}")
    return url, server


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nanochat.scripts.bench_web", description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter)
    add_server_arguments(p)
    p.add_argument("--url", default=None, help="benchmark this running server instead of starting one")
    p.add_argument("--streams", type=positive_int, default=24, help="concurrent streams")
    p.add_argument("--sequential", type=positive_int, default=5, help="requests one after another")
    p.add_argument("--max-tokens", "--max_tokens", dest="max_tokens", type=positive_int, default=64,
                   help="tokens per answer (fewer when the model ends its answer)")
    args = p.parse_args(argv)
    if args.url:
        url, server = args.url.rstrip("/"), None
    else:
        import logging

        logging.getLogger("nanochat.web").setLevel(logging.WARNING)  # no line per request in the figures
        from nanochat.checkpoint_manager import CheckpointError

        try:
            url, server = start_server(args)
        except (ValueError, CheckpointError) as e:
            print(f"bench_web: error: {e}", file=sys.stderr)
            return 2
    one_by_one, together, wall, stats = asyncio.run(measure(url, 2, args.sequential, args.streams, args.max_tokens))
    report(one_by_one, together, wall, stats, args.max_tokens)
    if server is not None:
        server.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
