"""Named run sizes for the whole pipeline: which stages run and with which arguments, in one place.

A preset maps each pipeline stage it runs to the arguments of that stage's script. `speedrun.sh` and the
remote launcher both read it from here, so a size is defined once:

    python -m nanochat.presets list                 # the presets and what each is for
    python -m nanochat.presets show cpu             # every stage of a preset: module and arguments
    python -m nanochat.presets stages cpu           # the stage names a preset runs, in order, one per line
    python -m nanochat.presets args cpu base        # the arguments of one stage, on one line
    python -m nanochat.presets module base          # the module that runs a stage
    python -m nanochat.presets nproc d20            # processes per node it is sized for (8)
    python -m nanochat.presets distributed base     # exit 0: the stage runs under torchrun on a GPU node

Arguments never contain whitespace (a test checks it), so a shell can split the `args` line into words:
`read -ra ARGS <<< "$(python -m nanochat.presets args cpu base)"`. Flags given after them win (argparse keeps
the last value), which is how `DEPTH=12` or `MODEL=...` override a preset.

A stage that a preset leaves out is not run for it (the cpu preset has no download stage: it is offline).
`rl` and `rl_eval` are listed but only run when asked for (`RL=1 bash speedrun.sh`), as in nanochat.
"""

import argparse
import sys
from dataclasses import dataclass, field

# every stage of the pipeline, in the order it runs, with the module that runs it (`python -m MODULE ARGS`)
STAGE_MODULES = {
    "data": "nanochat.dataset",
    "tokenizer": "nanochat.scripts.tok_train",
    "tok_eval": "nanochat.scripts.tok_eval",
    "base": "nanochat.scripts.base_train",
    "base_loss": "nanochat.scripts.base_loss",
    "base_eval": "nanochat.scripts.base_eval",
    "base_chat_eval": "nanochat.scripts.chat_eval",
    "mid": "nanochat.scripts.mid_train",
    "mid_eval": "nanochat.scripts.chat_eval",
    "sft": "nanochat.scripts.chat_sft",
    "sft_eval": "nanochat.scripts.chat_eval",
    "rl": "nanochat.scripts.chat_rl",
    "rl_eval": "nanochat.scripts.chat_eval",
}
STAGES = tuple(STAGE_MODULES)
OPTIONAL_STAGES = ("rl", "rl_eval")  # run only on request (RL=1)
# stages that run one process per GPU under torchrun on a multi-GPU node (the rest are single-process)
DISTRIBUTED_STAGES = ("base", "base_loss", "base_eval", "base_chat_eval", "mid", "mid_eval", "sft", "sft_eval", "rl", "rl_eval")


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    nproc: int  # processes per node (GPUs) the preset is sized for; NPROC overrides it
    stages: dict[str, tuple[str, ...]] = field(default_factory=dict)  # stage -> arguments, for the stages it runs


def _gpu_preset(name, depth, shards, summary):
    """The 8-GPU recipe at one depth: nanochat's speedrun settings."""
    return Preset(name=name, summary=summary, nproc=8, stages={
        "data": ("-n", str(shards)),
        "tokenizer": ("--corpus", "shards", "--vocab-size", "65536", "--max-chars", "2000000000"),
        "tok_eval": (),
        "base": (f"--depth={depth}", "--data=shards", "--target_param_data_ratio=20"),
        "base_loss": (),
        "base_eval": ("-i", "base"),
        "mid": (),
        "mid_eval": ("-i", "mid"),
        "sft": (),
        "sft_eval": ("-i", "sft"),
        "rl": (),
        "rl_eval": ("-i", "rl", "-a", "GSM8K"),
    })


PRESETS = {
    "d20": _gpu_preset("d20", depth=20, shards=240,
                       summary="nanochat's speedrun: ~561M parameters, 11.2B tokens; 8xH100, about 4 hours"),
    "d12": _gpu_preset("d12", depth=12, shards=80,
                       summary="a smaller full run: ~185M parameters at 20 tokens per parameter; 8 GPUs, ~1 hour"),
    "gpu": Preset(
        name="gpu", nproc=1,
        summary="a few minutes on one GPU, offline (embedded corpus, generated and packaged task data), depth 12: "
                "measures throughput and MFU of every stage",
        stages={
            "tokenizer": ("--corpus", "embedded"),
            "tok_eval": ("--max-chars", "200000"),
            "base": ("--depth=12", "--max_seq_len=2048", "--device_batch_size=32", "--total_batch_size=65536",
                     "--num_iterations=200", "--data=embedded", "--eval_every=100", "--eval_tokens=262144",
                     "--sample_every=-1", "--save_every=-1"),
            "base_loss": ("--data=embedded", "--split_tokens=262144"),
            "base_chat_eval": ("-i", "base", "-a", "all", "-n", "16", "--max-new-tokens", "64"),
            "mid": ("--data=offline", "--max_seq_len=2048", "--device_batch_size=32", "--total_batch_size=65536",
                    "--num_iterations=100", "--eval_every=50", "--eval_tokens=262144"),
            "mid_eval": ("-i", "mid", "-a", "all", "-n", "16", "--max-new-tokens", "64"),
            "sft": ("--data=offline", "--device_batch_size=16", "--examples_per_step=32", "--num_iterations=100",
                    "--eval_every=50", "--eval_steps=16", "--chat_eval_tasks=SpellingBee", "--chat_eval_problems=16"),
            "sft_eval": ("-i", "sft", "-a", "all", "-n", "16", "--max-new-tokens", "64"),
            "rl": ("--data=offline", "--num_iterations=10", "--examples_per_step=4", "--num_samples=8",
                   "--device_batch_size=16", "--max_new_tokens=96", "--eval_every=5", "--eval_examples=16"),
            "rl_eval": ("-i", "rl", "-a", "all", "-n", "16", "--max-new-tokens", "64"),
        }),
    "cpu": Preset(
        name="cpu", nproc=1,
        summary="every stage on a laptop CPU, offline (embedded corpus, generated and packaged task data), "
                "depth 4; about 10 minutes of one core's time",
        stages={
            "tokenizer": ("--corpus", "embedded"),
            "tok_eval": ("--max-chars", "200000"),
            "base": ("--depth=4", "--max_seq_len=512", "--device_batch_size=4", "--total_batch_size=2048",
                     "--num_iterations=100", "--data=embedded", "--eval_every=50", "--eval_tokens=16384",
                     "--sample_every=-1", "--save_every=50"),
            "base_loss": ("--data=embedded", "--split_tokens=16384", "--max_tokens=16"),
            # no CORE offline: its eval bundle is a download (base_eval --download); the base model is measured
            # with the same chat_eval tasks as the later phases instead
            "base_chat_eval": ("-i", "base", "-a", "all", "-n", "16", "--max-new-tokens", "40"),
            "mid": ("--data=offline", "--max_seq_len=512", "--device_batch_size=4", "--total_batch_size=2048",
                    "--num_iterations=40", "--eval_every=20", "--eval_tokens=8192", "--save_every=20"),
            "mid_eval": ("-i", "mid", "-a", "all", "-n", "16", "--max-new-tokens", "40"),
            "sft": ("--data=offline", "--device_batch_size=4", "--examples_per_step=8", "--num_iterations=40",
                    "--eval_every=20", "--eval_steps=8", "--save_every=20", "--chat_eval_tasks=SpellingBee",
                    "--chat_eval_problems=8"),
            "sft_eval": ("-i", "sft", "-a", "all", "-n", "16", "--max-new-tokens", "40"),
            "rl": ("--data=offline", "--num_iterations=4", "--examples_per_step=2", "--num_samples=4",
                   "--device_batch_size=4", "--max_new_tokens=40", "--eval_every=2", "--eval_examples=4",
                   "--save_every=2"),
            "rl_eval": ("-i", "rl", "-a", "all", "-n", "16", "--max-new-tokens", "40"),
        }),
}


class PresetError(ValueError):
    """An unknown preset or stage; the message lists the valid names."""


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def stage_args(preset_name: str, stage: str) -> tuple[str, ...]:
    """The arguments of `stage` in the preset; an error if the preset does not run that stage."""
    preset = get_preset(preset_name)
    if stage not in STAGE_MODULES:
        raise PresetError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    if stage not in preset.stages:
        raise PresetError(f"preset {preset_name!r} does not run stage {stage!r}; "
                          f"it runs {', '.join(preset.stages)}")
    return preset.stages[stage]


def stages_of(preset_name: str, include_optional: bool = False) -> list[str]:
    """The stages the preset runs, in pipeline order (the optional RL stages only when asked for)."""
    preset = get_preset(preset_name)
    return [s for s in STAGES if s in preset.stages and (include_optional or s not in OPTIONAL_STAGES)]


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m nanochat.presets", description="Named run sizes for the pipeline.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the presets and what each is for")
    show = sub.add_parser("show", help="every stage of a preset with its module and arguments")
    show.add_argument("preset")
    stages = sub.add_parser("stages", help="the stages a preset runs, in order")
    stages.add_argument("preset")
    stages.add_argument("--rl", action="store_true", help="include the optional RL stages")
    args = sub.add_parser("args", help="the arguments of one stage, on one line")
    args.add_argument("preset")
    args.add_argument("stage")
    module = sub.add_parser("module", help="the module that runs a stage")
    module.add_argument("stage")
    nproc = sub.add_parser("nproc", help="processes per node the preset is sized for")
    nproc.add_argument("preset")
    distributed = sub.add_parser("distributed", help="exit 0 if a stage runs under torchrun on a GPU node, else 1")
    distributed.add_argument("stage")
    return p.parse_args(argv)


def main(argv=None):
    args = _parse(argv)
    try:
        if args.command == "list":
            for preset in PRESETS.values():
                print(f"{preset.name:5s} {preset.summary}")
        elif args.command == "show":
            preset = get_preset(args.preset)
            print(f"{preset.name}: {preset.summary} ({preset.nproc} process(es) per node)")
            for stage in stages_of(preset.name, include_optional=True):
                optional = " (optional, RL=1)" if stage in OPTIONAL_STAGES else ""
                command = " ".join(["python", "-m", STAGE_MODULES[stage], *preset.stages[stage]])
                print(f"  {stage:14s} {command}{optional}")
        elif args.command == "stages":
            print("\n".join(stages_of(args.preset, include_optional=args.rl)))
        elif args.command == "args":
            print(" ".join(stage_args(args.preset, args.stage)))
        elif args.command == "nproc":
            print(get_preset(args.preset).nproc)
        elif args.command == "distributed":
            sys.exit(0 if args.stage in DISTRIBUTED_STAGES else 1)
        else:
            if args.stage not in STAGE_MODULES:
                raise PresetError(f"unknown stage {args.stage!r}; stages are {', '.join(STAGES)}")
            print(STAGE_MODULES[args.stage])
    except PresetError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
