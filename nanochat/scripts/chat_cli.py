"""Talk to a trained model in the terminal, token by token.

    python -m nanochat.scripts.chat_cli                       # interactive; the SFT model if there is one
    python -m nanochat.scripts.chat_cli -p "What is 12*7?"    # one question, one answer, exit
    python -m nanochat.scripts.chat_cli -i base -g d4 -p "The capital of France is"
    python -m nanochat.scripts.chat_cli --model path/to/my_gpt.py   # the checkpoint, run by your implementation

Interactive commands: 'quit' or 'exit' (or Ctrl-D) leave, 'clear' starts a new conversation, Ctrl-C while the
model is answering cuts the answer short.

Chat models (mid, sft, rl checkpoints) see the conversation the way they were trained on it:
<|bos|><|user_start|>...<|user_end|><|assistant_start|>...<|assistant_end|>, turn after turn, and the answer
streams until <|assistant_end|>. When the model writes a calculator call, <|python_start|>expr<|python_end|>,
the Engine evaluates it and forces the result in as <|output_start|>result<|output_end|>; both are shown
marked, as [calc expr] and [= result].

A base checkpoint has never seen those chat tokens, so with `-i base` (or when only a base model exists) each
input is continued as plain text after <|bos|>, with no conversation history.

With no `-i`, the newest phase that has checkpoints is used: sft, then mid, then base, and the fallback is
announced. The tag and step default to the deepest model and its latest step (announced too).
"""

import argparse
import os
import sys
from contextlib import nullcontext

import torch
from rich.console import Console

from nanochat.checkpoint_manager import (PHASES, CheckpointError, checkpoints_dir, find_largest_model,
                                         find_last_step, load_model)
from nanochat.common import autodetect_device_type, compute_dtype, get_base_dir
from nanochat.engine import Engine
from nanochat.model_source import ModelSourceError

FALLBACK_ORDER = ("sft", "mid", "base")
TINY_TRAIN = ("python -m nanochat.scripts.base_train --depth=4 --max_seq_len=512 --device_batch_size=1 "
              "--total_batch_size=512 --num_iterations=1")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m nanochat.scripts.chat_cli", description=__doc__.split("\n")[0])
    p.add_argument("-i", "--phase", default=None, choices=PHASES,
                   help="which phase's checkpoint (default: sft, falling back to mid, then base)")
    p.add_argument("-g", "--model-tag", "--model_tag", dest="model_tag", default=None,
                   help="checkpoint tag such as d4 (default: the deepest)")
    p.add_argument("-s", "--step", type=int, default=None, help="checkpoint step (default: the latest)")
    p.add_argument("-p", "--prompt", default=None, help="answer this one prompt and exit")
    p.add_argument("-t", "--temperature", type=float, default=0.6,
                   help="sampling temperature; 0 = greedy (default: 0.6)")
    p.add_argument("-k", "--top-k", "--top_k", dest="top_k", type=int, default=50,
                   help="sample among the k likeliest tokens (default: 50)")
    p.add_argument("-m", "--max-tokens", "--max_tokens", dest="max_tokens", type=int, default=256,
                   help="longest answer in tokens (default: 256)")
    p.add_argument("--seed", type=int, default=42, help="sampling seed; each interactive turn adds 1 (default: 42)")
    p.add_argument("--model", default=None,
                   help="model implementation: 'reference' or a .py path "
                        "(default: the one the checkpoint was trained with)")
    p.add_argument("--device-type", "--device_type", dest="device_type", default="",
                   help="cuda|mps|cpu (default: autodetect, cuda > mps > cpu)")
    args = p.parse_args(argv)
    if args.temperature < 0:
        p.error(f"-t/--temperature must be >= 0, got {args.temperature}")
    if args.top_k < 1:
        p.error(f"-k/--top-k must be >= 1, got {args.top_k}")
    if args.max_tokens < 1:
        p.error(f"-m/--max-tokens must be >= 1, got {args.max_tokens}")
    if args.step is not None and args.step < 0:
        p.error(f"-s/--step must be >= 0, got {args.step}")
    if args.prompt is not None and not args.prompt.strip():
        p.error("-p/--prompt is empty")
    try:
        args.device_type = autodetect_device_type(args.device_type or None)
    except ValueError as e:
        p.error(f"--device-type: {e}")
    return args


def has_checkpoint(phase, model_tag):
    root = checkpoints_dir(phase)
    try:
        tag = model_tag or find_largest_model(root)
        find_last_step(os.path.join(root, tag))
        return True
    except CheckpointError:
        return False


def pick_phase(requested, model_tag, err):
    """The checkpoint phase to load, announcing a fallback; exits with the way forward when there is none."""
    tag_text = f" with tag {model_tag}" if model_tag else ""
    if requested:
        if has_checkpoint(requested, model_tag):
            return requested
        present = [s for s in PHASES if has_checkpoint(s, model_tag)]
        hint = f"checkpoints exist for: {', '.join(present)} (pass -i {present[0]})" if present else \
            f"train a tiny base model first (seconds on a CPU):\n  {TINY_TRAIN}"
        raise SystemExit(f"error: no {requested} checkpoint{tag_text} in {checkpoints_dir(requested)}; {hint}")
    for phase in FALLBACK_ORDER:
        if has_checkpoint(phase, model_tag):
            if phase != FALLBACK_ORDER[0]:
                err.print(f"note: no sft checkpoint{tag_text} yet; using the {phase} model "
                          f"(choose with -i)", style="yellow")
            return phase
    raise SystemExit(f"error: no checkpoint{tag_text} to chat with in {get_base_dir()} (looked for "
                     f"{', '.join(s + '_checkpoints' for s in FALLBACK_ORDER)}).\n"
                     f"Train a tiny base model first (seconds on a CPU):\n  {TINY_TRAIN}\n"
                     f"then: python -m nanochat.scripts.chat_cli -i base -p \"The capital of France is\"")


class Streamer:
    """Prints the tokens of one answer as they arrive: text decoded incrementally (a character split over
    several tokens waits until it is whole), calculator calls and results marked and coloured."""

    def __init__(self, tokenizer, out):
        self.tokenizer = tokenizer
        self.out = out
        special = tokenizer.encode_special
        self.markers = {
            special("<|python_start|>"): ("[calc ", "python"),
            special("<|python_end|>"): ("]", None),
            special("<|output_start|>"): ("[= ", "output"),
            special("<|output_end|>"): ("]", None),
        }
        self.styles = {None: None, "python": "bold cyan", "output": "bold green"}
        self.mode = None
        self.segment = []  # token ids of the current run of plain text
        self.printed = 0  # characters of that run already printed

    def _flush_text(self, final=False):
        text = self.tokenizer.decode(self.segment)
        if not final and text.endswith("\ufffd"):
            return  # an incomplete UTF-8 character: wait for the next token
        if len(text) > self.printed:
            self.out.print(text[self.printed:], end="", style=self.styles[self.mode], markup=False,
                           highlight=False, soft_wrap=True)
            self.printed = len(text)

    def feed(self, token):
        if token in self.markers:
            self._flush_text(final=True)
            self.segment, self.printed = [], 0
            marker, mode = self.markers[token]
            style = self.styles[mode or self.mode]
            self.out.print(marker, end="", style=style, markup=False, highlight=False, soft_wrap=True)
            self.mode = mode
        else:
            self.segment.append(token)
            self._flush_text()

    def finish(self):
        self._flush_text(final=True)
        self.out.print()


class Chat:
    def __init__(self, args, model, tokenizer, chat_mode, autocast_ctx):
        self.args = args
        self.engine = Engine(model, tokenizer)
        self.tokenizer = tokenizer
        self.chat_mode = chat_mode
        self.autocast_ctx = autocast_ctx
        self.out = Console(highlight=False)
        special = tokenizer.encode_special
        self.bos = tokenizer.get_bos_token_id()
        self.user_start, self.user_end = special("<|user_start|>"), special("<|user_end|>")
        self.assistant_start, self.assistant_end = special("<|assistant_start|>"), special("<|assistant_end|>")
        self.turn = 0
        self.clear()

    def clear(self):
        self.history = [self.bos]  # the conversation so far, as tokens

    def reply(self, text):
        """Stream the model's answer to `text`; the conversation keeps what was actually shown."""
        if self.chat_mode:
            user = [self.user_start] + self.tokenizer.encode(text) + [self.user_end]
            prompt = self.history + user + [self.assistant_start]
        else:
            prompt = [self.bos] + self.tokenizer.encode(text)
            self.out.print(text, end="", markup=False, highlight=False, soft_wrap=True)
        streamer = Streamer(self.tokenizer, self.out)
        answer = []
        seed = self.args.seed + self.turn
        self.turn += 1
        try:
            with self.autocast_ctx:
                for column, _ in self.engine.generate(prompt, num_samples=1, max_tokens=self.args.max_tokens,
                                                      temperature=self.args.temperature, top_k=self.args.top_k,
                                                      seed=seed):
                    token = column[0]
                    if token in (self.assistant_end, self.bos):
                        break
                    answer.append(token)
                    streamer.feed(token)
        except KeyboardInterrupt:
            streamer.finish()
            self.out.print("(answer cut short)", style="dim")
        except ValueError as e:  # the conversation outgrew the model's context
            streamer.finish()
            self.out.print(f"({e}; starting a new conversation)", style="yellow")
            self.clear()
            return
        else:
            streamer.finish()
        if self.chat_mode:
            self.history = prompt + answer + [self.assistant_end]

    def interactive(self):
        mode = "chat" if self.chat_mode else "base model: each line is continued as text, no history"
        self.out.print(f"nanochat ({mode}). Type 'quit' or 'exit' (or Ctrl-D) to leave, 'clear' to start over.",
                       style="dim", soft_wrap=True)
        while True:
            try:
                text = input("\nUser: ")
            except (EOFError, KeyboardInterrupt):
                print()
                return
            command = text.strip().lower()
            if command in ("quit", "exit"):
                return
            if command == "clear":
                self.clear()
                self.out.print("(new conversation)", style="dim")
                continue
            if not text.strip():
                continue
            self.out.print("\nAssistant: " if self.chat_mode else "\n", end="", style="bold")
            self.reply(text)


def main(argv=None):
    args = parse_args(argv)
    err = Console(stderr=True, highlight=False)
    device = torch.device(args.device_type)
    if device.type == "cuda":
        torch.cuda.set_device(0)
    autocast_ctx = torch.amp.autocast(device_type="cuda", dtype=compute_dtype("cuda")) \
        if device.type == "cuda" else nullcontext()
    try:
        phase = pick_phase(args.phase, args.model_tag, err)
        model, tokenizer, meta = load_model(phase, device, mode="eval", model_tag=args.model_tag,
                                            step=args.step, model_source=args.model)
    except (CheckpointError, ModelSourceError) as e:
        raise SystemExit(f"error: {e}") from None
    vocab = meta["model_config"]["vocab_size"]
    if vocab != tokenizer.get_vocab_size():
        raise SystemExit(f"error: the checkpoint was trained with a vocabulary of {vocab} tokens but the current "
                         f"tokenizer has {tokenizer.get_vocab_size()}; the tokenizer in $NANOCHAT_BASE_DIR "
                         f"changed since training")
    chat = Chat(args, model, tokenizer, chat_mode=phase != "base", autocast_ctx=autocast_ctx)
    if args.prompt is not None:
        chat.reply(args.prompt)
        return
    if not sys.stdin.isatty():
        err.print("note: reading the conversation from stdin", style="dim")
    chat.interactive()


if __name__ == "__main__":
    main()
