#!/usr/bin/env bash
# From nothing to a chat model: data, tokenizer, pretraining (+ CORE), mid-training, SFT, chat evals (and RL),
# then the report card and how to talk to the result. Every stage is a script in nanochat/scripts/; the size of
# each is a preset in nanochat/presets.py (`python -m nanochat.presets show d20`).
#
#   bash speedrun.sh                  the d20 run on one 8-GPU node (~561M parameters; roughly 4 h on 8xH100)
#   NPROC=4 DEPTH=12 bash speedrun.sh fewer GPUs, a smaller model (PRESET=d12 sizes the data for it)
#   PRESET=cpu bash speedrun.sh       every stage on a laptop CPU, offline, depth 4 (~10 min on 2 idle cores)
#   MODEL=my-gpt/learner_gpt.py ...   your own GPT file in every training and evaluation stage
#   RL=1 ...                          add reinforcement learning on GSM8K and its eval
#
# Other variables: NANOCHAT_BASE_DIR (default ~/.cache/nanochat), WANDB_RUN (a wandb run name for pretraining),
# MODEL_TAG (the checkpoint tag of every stage; default d<depth>).
# Each stage's time is printed as it ends and recorded in the report ($NANOCHAT_BASE_DIR/report/report.md).
set -euo pipefail
cd "$(dirname "$0")"

PRESET="${PRESET:-d20}"
RL="${RL:-0}"
export NANOCHAT_BASE_DIR="${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}"
mkdir -p "$NANOCHAT_BASE_DIR"
PY="${PYTHON:-python3}"

# install, unless this checkout is installed already (pip install -e . builds rustbpe; FORCE_INSTALL=1 rebuilds)
if [ "${FORCE_INSTALL:-0}" = 1 ] || ! "$PY" -c "import nanochat.presets, rustbpe" 2>/dev/null; then
    command -v cargo >/dev/null || { echo "speedrun: a Rust toolchain is needed to build rustbpe (https://rustup.rs)"; exit 1; }
    "$PY" -m pip install -e .
fi
"$PY" -m nanochat.presets nproc "$PRESET" >/dev/null || exit 2   # an unknown PRESET: the error lists the presets
NPROC="${NPROC:-$("$PY" -m nanochat.presets nproc "$PRESET")}"
[ "$PRESET" = cpu ] || export OMP_NUM_THREADS=1   # on a GPU node the CPU threads only feed the GPUs

# run_stage STAGE [extra flags...]: the preset's arguments, then the extras (later flags win); timed and recorded
run_stage() {
    local stage="$1"; shift
    local module args
    module="$("$PY" -m nanochat.presets module "$stage")"
    read -ra args <<< "$("$PY" -m nanochat.presets args "$PRESET" "$stage")"
    local launcher=("$PY" -m "$module")
    if [ "$NPROC" -gt 1 ] && "$PY" -m nanochat.presets distributed "$stage"; then
        launcher=("$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m "$module")
    fi
    echo "== $stage: ${launcher[*]} ${args[*]} $*"
    local start=$SECONDS rc=0
    "${launcher[@]}" "${args[@]}" "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "speedrun: stage $stage failed (exit $rc); fix it, then run the stages from $stage on by hand" \
             "(python -m nanochat.presets show $PRESET lists them)"
        exit "$rc"
    fi
    local took=$((SECONDS - start))
    "$PY" -m nanochat.report time "$stage" "$took"
    printf '== %s: %dm%02ds\n' "$stage" $((took / 60)) $((took % 60))
}

"$PY" -m nanochat.report reset
TOTAL_START=$SECONDS
STAGES=$("$PY" -m nanochat.presets stages "$PRESET" $([ "$RL" = 1 ] && echo --rl))
MODEL_FLAGS=()
[ -n "${MODEL:-}" ] && MODEL_FLAGS=(--model "$MODEL")
# one model tag for the whole run (d<depth>), so no stage picks up a deeper model left in the base dir earlier
DEPTH_OF_RUN="${DEPTH:-$("$PY" -m nanochat.presets args "$PRESET" base | grep -o -- '--depth=[0-9]*' | cut -d= -f2)}"
TAG="${MODEL_TAG:-d$DEPTH_OF_RUN}"
DOWNLOAD_PID=""
for stage in $STAGES; do
    case "$stage" in
        data)  # the first 8 shards now (the tokenizer trains on them), the rest in the background meanwhile
            "$PY" -m nanochat.dataset -n 8
            read -ra data_args <<< "$("$PY" -m nanochat.presets args "$PRESET" data)"
            "$PY" -m nanochat.dataset "${data_args[@]}" &
            DOWNLOAD_PID=$! ;;
        base)
            if [ -n "$DOWNLOAD_PID" ]; then wait "$DOWNLOAD_PID"; DOWNLOAD_PID=""; fi
            run_stage base ${DEPTH:+--depth="$DEPTH"} --model-tag="$TAG" --run="${WANDB_RUN:-dummy}" "${MODEL_FLAGS[@]}" ;;
        tokenizer|tok_eval)
            run_stage "$stage" ;;
        *)  # training and evaluation: the learner's file, when given, runs in every one of them
            run_stage "$stage" -g "$TAG" "${MODEL_FLAGS[@]}" ;;
    esac
done
if [ "$PRESET" = cpu ]; then
    echo "note: no CORE metric offline (its eval bundle is a download: python -m nanochat.scripts.base_eval --download," \
         "then python -m nanochat.scripts.base_eval)"
fi

"$PY" -m nanochat.report
TOTAL=$((SECONDS - TOTAL_START))
printf 'speedrun (%s): all stages in %dm%02ds\n' "$PRESET" $((TOTAL / 60)) $((TOTAL % 60))
CHAT="-i sft -g $TAG"
[ "$RL" = 1 ] && CHAT="-i rl -g $TAG"
[ -n "${MODEL:-}" ] && CHAT="$CHAT --model $MODEL"
cat <<EOF

Chat with your model:
  python -m nanochat.scripts.chat_cli $CHAT -p "What is 2+2?"     # one question
  python -m nanochat.scripts.chat_cli $CHAT                       # a conversation in the terminal
  python -m nanochat.scripts.chat_web $CHAT                       # in the browser: http://127.0.0.1:8000
  nanochat-workbench                                               # the TUI's Chat screen (key 5)
EOF
