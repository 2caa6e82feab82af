"""The chat screen's model process: loads a checkpoint and streams generated text as JSON lines.

The TUI never imports torch; it starts
`python -m workbench.tui.services.chat_worker --phase sft --tag d4 --step 100 [--engine learner_engine.py]` and
talks to it over stdin/stdout, one JSON object per line. With --engine, the learner's engine module generates.

Requests (stdin):
    {"cmd": "generate", "messages": [{"role": "user", "content": "..."}, ...],
     "temperature": 0.8, "top_k": 50, "max_tokens": 256, "top5": false}
        chat checkpoints (mid/sft/rl): the conversation is rendered with the chat special tokens;
        base checkpoints: the last user message is a prompt to continue (a base model has never seen a chat).
    {"cmd": "stop"}      end the current generation early
Events (stdout):
    {"event": "ready", "phase", "tag", "step", "model_source", "engine", "device", "mode": "chat"|"completion"}
    {"event": "token", "text"}            sampled text (decoded incrementally, never half a UTF-8 character)
    {"event": "tool", "text"}             a calculator expression the model wrote (<|python_start|>…<|python_end|>)
    {"event": "tool_output", "text"}      the calculator's answer, forced into the stream by the engine
    {"event": "candidates", "token", "text", "top": [[id, text, p], ...]}
                                          with "top5": the 5 likeliest tokens at a sampled step (the model's
                                          probabilities at temperature 1), before that step's text events
    {"event": "done", "tokens", "seconds", "stopped"}
    {"event": "error", "message"}
"""

import argparse
import json
import queue
import sys
import threading
import time


def emit(event: str, **fields) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class Segment:
    """Decodes a growing list of token ids into text deltas, holding back an incomplete UTF-8 character."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.sent = tokenizer, [], ""

    def add(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        delta, self.sent = text[len(self.sent):], text
        return delta

    def flush(self) -> str:
        text = self.tokenizer.decode(self.ids)
        delta = text[len(self.sent):]
        self.ids, self.sent = [], ""
        return delta


def read_requests(requests: "queue.Queue[dict]", stop: threading.Event) -> None:
    """stdin reader thread: "stop" sets the flag at once; other requests are queued; EOF ends the worker."""
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
        except ValueError:
            emit("error", message=f"not a JSON request: {line[:80]}")
            continue
        if request.get("cmd") == "stop":
            stop.set()
        else:
            requests.put(request)
    requests.put({"cmd": "exit"})


def token_text(tokenizer, token: int) -> str:
    """One token as text; a piece of a UTF-8 character is shown as its id."""
    text = tokenizer.decode([token])
    return f"<{token}>" if "\ufffd" in text else text


def emit_candidates(tokenizer, token: int, tap) -> None:
    top = [[t, token_text(tokenizer, t), round(p, 4)] for t, p in tap.latest]
    emit("candidates", token=token, text=token_text(tokenizer, token), top=top)


def generate(engine, tokenizer, mode: str, request: dict, stop: threading.Event) -> None:
    tap = None
    if request.get("top5"):  # only then is the model watched: a normal reply costs what it did
        from nanochat.engine import CandidateTap
        tap = CandidateTap(engine.model, 5)
    try:
        stream(engine, tokenizer, mode, request, stop, tap)
    finally:
        if tap is not None:
            tap.close()


def stream(engine, tokenizer, mode: str, request: dict, stop: threading.Event, tap=None) -> None:
    messages = request.get("messages") or []
    if mode == "chat":
        prompt = tokenizer.render_for_completion({"messages": messages})
    else:
        text = messages[-1]["content"] if messages else ""
        prompt = tokenizer.encode(text, prepend=tokenizer.get_bos_token_id())
    special = {name: tokenizer.encode_special(f"<|{name}|>") for name in
               ("python_start", "python_end", "output_start", "output_end", "assistant_end")}
    special["bos"] = tokenizer.get_bos_token_id()
    t0, count, kind = time.perf_counter(), 0, "token"
    segment = Segment(tokenizer)
    top_k = request.get("top_k")
    for column, masks in engine.generate(prompt, num_samples=1, max_tokens=int(request.get("max_tokens", 256)),
                                          temperature=float(request.get("temperature", 0.8)),
                                          top_k=int(top_k) if top_k else None,
                                          seed=int(request.get("seed", time.time_ns() % 2**31))):
        token = column[0]
        count += 1
        if tap is not None and masks[0]:
            emit_candidates(tokenizer, token, tap)
        if token in (special["assistant_end"], special["bos"]):
            break
        if token in (special["python_start"], special["output_start"]):
            if (delta := segment.flush()):
                emit(kind, text=delta)
            kind = "tool" if token == special["python_start"] else "tool_output"
        elif token in (special["python_end"], special["output_end"]):
            if (delta := segment.flush()):
                emit(kind, text=delta)
            kind = "token"
        elif (delta := segment.add(token)):
            emit(kind, text=delta)
        if stop.is_set():
            break
    if (delta := segment.flush()):
        emit(kind, text=delta)
    emit("done", tokens=count, seconds=round(time.perf_counter() - t0, 3), stopped=stop.is_set())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-i", "--phase", default="sft", choices=["base", "mid", "sft", "rl"],
                        help="the checkpoint's training phase (default: sft)")
    parser.add_argument("--tag", default=None, help="model tag (checkpoint folder); default: the largest")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step; default: the last")
    parser.add_argument("--device", default=None, help="cpu | cuda | mps; default: autodetect")
    parser.add_argument("--engine", default=None, help="the learner's engine file; default: nanochat.engine")
    args = parser.parse_args(argv)

    try:
        from nanochat.checkpoint_manager import load_model
        from nanochat.common import autodetect_device_type
        from nanochat.model_source import ENGINE, load_learner
        device = autodetect_device_type(args.device)
        Engine = load_learner(args.engine, ENGINE).Engine
        model, tokenizer, meta = load_model(args.phase, device, "eval", model_tag=args.tag, step=args.step)
    except Exception as e:  # CheckpointError, ModelSourceError, a learner file that no longer imports
        emit("error", message=f"could not load the {args.phase} checkpoint: {e}")
        return 1
    mode = "completion" if args.phase == "base" else "chat"
    engine = Engine(model, tokenizer)
    emit("ready", phase=args.phase, tag=args.tag, step=meta.get("step"), device=str(device), mode=mode,
         model_source=str(meta.get("model_source", "reference")), engine=args.engine or "reference")

    requests: queue.Queue[dict] = queue.Queue()
    stop = threading.Event()
    threading.Thread(target=read_requests, args=(requests, stop), daemon=True).start()
    while True:
        request = requests.get()
        if request.get("cmd") == "exit":
            return 0
        if request.get("cmd") != "generate":
            emit("error", message=f"unknown command {request.get('cmd')!r}")
            continue
        stop.clear()
        try:
            generate(engine, tokenizer, mode, request, stop)
        except Exception as e:  # a learner model that fails mid-generation: report it, keep the process
            emit("error", message=f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    sys.exit(main())
