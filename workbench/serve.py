"""`nanochat-workbench serve`: the web chat for a checkpoint (the options of `python -m nanochat.scripts.chat_web`).

With no -i/--phase it serves the newest chat-stage checkpoint (rl, then sft, then mid; base when there is no
chat model yet) and says which; it listens on 127.0.0.1 unless --host says otherwise.
"""

import argparse

from nanochat.scripts.chat_web import add_server_arguments, serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return serve(args, prog="nanochat-workbench serve")
