#!/usr/bin/env bash
# The pipeline on one GPU node (8 GPUs assumed; set NPROC for fewer): install, data, tokenizer, pretraining,
# evaluation, then a chat with the result. The d20 model (~561M parameters) at 20 tokens per parameter is
# about 11.2B tokens; on 8xH100 nanochat's reference run takes roughly 3-4 hours end to end.
#
# Stages this build has: tokenizer, base pretraining, base bpb + samples, chat CLI.
# Mid-training, SFT, RL and the CORE / chat evals arrive in later issues; this script stops after the base model.
#
# Usage:  bash speedrun.sh            (from the repository root, on the GPU node)
#         NPROC=4 DEPTH=12 bash speedrun.sh
set -euo pipefail
cd "$(dirname "$0")"

export OMP_NUM_THREADS=1
export NANOCHAT_BASE_DIR="${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}"
NPROC="${NPROC:-8}"
DEPTH="${DEPTH:-20}"
SHARDS="${SHARDS:-240}"   # ~24 GB of text: enough for d20 at 20 tokens per parameter
mkdir -p "$NANOCHAT_BASE_DIR"

command -v cargo >/dev/null || { echo "speedrun: a Rust toolchain is needed to build rustbpe (https://rustup.rs)"; exit 1; }
python3 -m pip install -e .

# data: the first 8 shards now (tokenizer training), the rest in the background while the tokenizer trains
python3 -m nanochat.dataset -n 8
python3 -m nanochat.dataset -n "$SHARDS" &
DOWNLOAD_PID=$!

# tokenizer: vocab 65536 on ~2B characters of the shards
python3 -m nanochat.scripts.tok_train --corpus shards --vocab-size 65536 --max-chars 2000000000
python3 -m nanochat.scripts.tok_eval

wait "$DOWNLOAD_PID"

# pretraining, then bits per byte and samples
python3 -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m nanochat.scripts.base_train \
    --depth="$DEPTH" --run="${WANDB_RUN:-dummy}"
python3 -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m nanochat.scripts.base_loss

# talk to it (a base model completes text; it has not been taught to chat yet)
python3 -m nanochat.scripts.chat_cli -i base -p "The capital of France is"
