"""Chat with a checkpoint in the browser: a FastAPI server that streams the model's answers.

    python -m nanochat.scripts.chat_web                   # the newest chat model (rl > sft > mid), else base
    python -m nanochat.scripts.chat_web -i base           # a base model: each message is continued as text
    python -m nanochat.scripts.chat_web -i sft -g d20 -s 700 --port 8080 --workers 2

Then open http://127.0.0.1:8000. The server listens on 127.0.0.1 only unless --host says otherwise
(`--host 0.0.0.0` exposes it to the network, without authentication, and says so). One worker per GPU, or
`--workers N` on a CPU; at most --max-queue requests wait for a free worker, more get 503 with Retry-After.
The API is described in nanochat/web/app.py; each request is logged in one line (tokens, seconds, tok/s).
"""

import argparse
import logging
import os
import sys
from functools import partial

from nanochat.common import HelpFormatter, non_negative_int, port_number, positive_int

# torch, fastapi and uvicorn are imported by serve(): parsing (and `nanochat-workbench serve --help`) stays light
PHASES = ("base", "mid", "sft", "rl")  # nanochat.checkpoint_manager.PHASES (that module imports torch)
DEFAULT_PORT = 8000
DEFAULT_MAX_QUEUE = 64
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

log = logging.getLogger("nanochat.web")


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    """The options of chat_web, shared with `nanochat-workbench serve`."""
    p.add_argument("-i", "--phase", default=None, choices=PHASES,
                   help="which training phase's checkpoint (default: the newest chat stage, rl > sft > mid, "
                        "else base)")
    p.add_argument("-g", "--model-tag", "--model_tag", dest="model_tag", default=None,
                   help="checkpoint tag such as d4 (default: the deepest)")
    p.add_argument("-s", "--step", type=non_negative_int, default=None, help="checkpoint step (default: the latest)")
    p.add_argument("-p", "--port", type=port_number, default=DEFAULT_PORT,
                   help=f"TCP port; 0 picks a free one (default: {DEFAULT_PORT})")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 exposes the server to the network (default: 127.0.0.1)")
    p.add_argument("-w", "--workers", type=positive_int, default=None,
                   help="generation workers: on a CPU this many (default 1), on GPUs at most this many (default: "
                        "one per GPU)")
    p.add_argument("--max-queue", "--max_queue", dest="max_queue", type=non_negative_int, default=DEFAULT_MAX_QUEUE,
                   help=f"requests that may wait for a busy worker before new ones get 503 "
                        f"(default: {DEFAULT_MAX_QUEUE})")
    p.add_argument("--engine", default=None,
                   help="inference engine: 'reference' (nanochat.engine, the default) or the path of your own "
                        "engine file (the engine track's learner_engine.py)")
    p.add_argument("--device-type", "--device_type", dest="device_type", default="",
                   help="cuda|mps|cpu (default: autodetect, cuda > mps > cpu)")


def serve(args: argparse.Namespace, prog: str = "chat_web") -> int:
    """Pick the checkpoint, then run the server until Ctrl-C; 2 when there is nothing to serve."""
    from nanochat.checkpoint_manager import CheckpointError
    from nanochat.common import autodetect_device_type
    from nanochat.web.load import choose_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    from nanochat.model_source import ENGINE, LearnerFileError, load_learner

    try:
        device_type = autodetect_device_type(args.device_type or None)
        checkpoint = choose_checkpoint(args.phase, args.model_tag, args.step)
        engine = load_learner(args.engine, ENGINE).Engine
    except (ValueError, CheckpointError, LearnerFileError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    import uvicorn

    from nanochat.web.app import ServerInfo, create_app
    from nanochat.web.load import load_workers

    info = ServerInfo(phase=checkpoint.phase, model_tag=checkpoint.model_tag, step=checkpoint.step,
                      device=device_type)
    app = create_app(partial(load_workers, checkpoint, device_type, args.workers, engine), info,
                     max_queue=args.max_queue)
    if engine.__module__ != ENGINE.reference:
        log.info("engine: %s", os.path.abspath(args.engine))
    mode = "chat" if checkpoint.chat_mode else "completion: each message is continued as plain text"
    log.info("serving %s checkpoint %s step %d (%s)", checkpoint.phase, checkpoint.model_tag, checkpoint.step, mode)
    if args.host not in LOOPBACK_HOSTS:
        log.warning("warning: --host %s exposes this server to the network, with no authentication: anyone who "
                    "can reach port %d can use the model", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info",
                timeout_graceful_shutdown=3)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nanochat.scripts.chat_web", description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter)
    add_server_arguments(p)
    return serve(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
