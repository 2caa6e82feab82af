"""What mid-training, SFT and RL share around their own step: flags, the model to start from, checkpoints,
the metrics file, the save/evaluate/stop loop and the report section.

A stage starts from the latest checkpoint of its input phase (base -> mid -> sft -> rl), under the same model
tag, and writes `<phase>_checkpoints/<tag>/`: `model_<step>.pt`, the optimizer state, and meta JSON holding
the parent checkpoint and the loop state (step, data position, smoothed loss, time). `--resume_from_step N`
continues from the stage's own step N exactly where it stopped: weights, optimizer moments, data position.
A missing input checkpoint or data is refused in one line naming the command that makes it.

The optimizers, learning-rate schedule, Ctrl-C handling and torchrun behaviour are base_train's
(nanochat.training): every phase trains the same way. `--optimizer` and `--training` put the learner's copies of
nanochat/muon.py, adamw.py and training.py in the reference's place, as for base_train (nanochat/learner_code.py).
"""

import argparse
import dataclasses
import os

import torch

from nanochat import learner_code, model_source as model_sources
from nanochat.checkpoint_manager import (CheckpointError, build_model, checkpoints_dir, find_largest_model,
                                         find_last_step, load_checkpoint, model_path, save_checkpoint)
from nanochat.common import (HelpFormatter, autodetect_device_type, compute_cleanup, from_a_collective, print0,
                             steps_or_auto)
from nanochat.learner_code import LearnerCode
from nanochat.model_source import ModelSourceError
from nanochat.posttrain import mixtures
from nanochat.training import (Compute, StopFlag, any_rank, append_jsonl, config_dict, format_duration,
                               setup_compute, truncate_metrics)

# the command that makes each phase's checkpoints (named when one is missing)
MAKES = {
    "base": "python -m nanochat.scripts.base_train",
    "mid": "python -m nanochat.scripts.mid_train",
    "sft": "python -m nanochat.scripts.chat_sft",
    "rl": "python -m nanochat.scripts.chat_rl",
}


@dataclasses.dataclass(frozen=True)
class StageFlags:
    """What differs between the stages in the flags they share: each stage's defaults and wording."""
    data_help: str  # what --data full and offline read
    iterations_help: str  # what --num_iterations -1 means
    init_lr_frac: float  # default peak lr as a fraction of the flags' lrs
    eval_every: int  # default steps between evals
    eval_help: str = "steps between val bpb evals; -1 = never"


def stage_parser(prog, description, input_choices, flags: StageFlags):
    """The flags every post-training stage has (a "data and batch" group is returned for the script's own)."""
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    g = p.add_argument_group("run")
    g.add_argument("--run", default="dummy", help="run name (wandb is not used by this stage; kept for speedrun)")
    g.add_argument("--device_type", default="", help="cuda|mps|cpu; empty = autodetect (cuda > mps > cpu)")
    g.add_argument("--model", default=None,
                   help="'reference' or the path of your own model file (default: the one the input checkpoint "
                        "was trained with)")
    g.add_argument("-i", "--source", default=input_choices[0], choices=input_choices,
                   help="the phase whose checkpoint this stage starts from")
    g.add_argument("-g", "--model_tag", "--model-tag", dest="model_tag", default=None,
                   help="checkpoint tag, input and output (default: the deepest d<N> of the input phase)")
    g.add_argument("--step", type=int, default=None, help="input checkpoint step (default: the latest)")
    g = p.add_argument_group("optimization")
    g.add_argument("--embedding_lr", type=float, default=0.2, help="AdamW lr of the embedding")
    g.add_argument("--unembedding_lr", type=float, default=0.004, help="AdamW lr of lm_head")
    g.add_argument("--matrix_lr", type=float, default=0.02, help="Muon lr of the block matrices")
    g.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay")
    g.add_argument("--grad_clip", type=float, default=1.0, help="max gradient norm; 0 = no clipping")
    learner_code.add_flags(g, dataloader=False)
    g = p.add_argument_group("evaluation, checkpoints")
    g.add_argument("--save_every", type=int, default=-1, help="steps between checkpoints; -1 = only at the end")
    g.add_argument("--resume_from_step", type=int, default=-1,
                   help="continue this stage from its own saved step; -1 = start from the input checkpoint")
    g.add_argument("--eval_every", type=int, default=flags.eval_every, help=flags.eval_help)
    g = p.add_argument_group("data and batch")
    g.add_argument("--data", default="full", choices=mixtures.KINDS, help=flags.data_help)
    g.add_argument("--num_iterations", type=steps_or_auto, default=-1, help=flags.iterations_help)
    g.add_argument("--init_lr_frac", type=float, default=flags.init_lr_frac,
                   help="peak lr as a fraction of the flags' lrs")
    return p, g


def check_stage_args(p, args):
    """Usage errors of the shared flags, as argparse errors (exit 2)."""
    for name in ("embedding_lr", "unembedding_lr", "matrix_lr", "weight_decay", "grad_clip"):
        if getattr(args, name) < 0:
            p.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.init_lr_frac <= 0:
        p.error(f"--init_lr_frac must be > 0, got {args.init_lr_frac}")
    if args.resume_from_step < -1:
        p.error(f"--resume_from_step must be a saved step or -1, got {args.resume_from_step}")
    if args.step is not None and args.step < 0:
        p.error(f"--step must be >= 0, got {args.step}")
    if args.model_tag is not None and (not args.model_tag or os.sep in args.model_tag or args.model_tag in (".", "..")):
        p.error(f"--model_tag must be a plain directory name, got {args.model_tag!r}")
    if args.device_type:
        try:
            autodetect_device_type(args.device_type)
        except ValueError as e:
            p.error(f"--device_type: {e}")


@dataclasses.dataclass
class Stage:
    """Everything a stage's loop reads but never changes."""
    args: argparse.Namespace
    phase: str  # mid | sft | rl
    compute: Compute
    tokenizer: object
    config: object
    orig_model: torch.nn.Module
    model: torch.nn.Module  # orig_model or its torch.compile wrapper
    optimizers: list
    code: LearnerCode  # the training module (schedule, step) and optimizer classes: the learner's or ours
    model_tag: str
    checkpoint_dir: str
    metrics_path: str
    parent: dict  # the input checkpoint: phase, tag, step
    model_source: str


@dataclasses.dataclass
class LoopState:
    """What changes from step to step and a checkpoint stores to resume exactly."""
    step: int = 0
    data_state: object = None  # this rank's data position after the last batch trained on
    smooth_loss: float = 0.0
    elapsed: float = 0.0
    best: dict = dataclasses.field(default_factory=dict)  # e.g. min val bpb
    step_times: list = dataclasses.field(default_factory=list)


def input_tag(phase, model_tag):
    """The tag to read (and write): the one given, or the deepest in the input phase; refusal if there is none."""
    try:
        return model_tag or find_largest_model(checkpoints_dir(phase))
    except CheckpointError:
        raise SystemExit(f"error: no {phase} checkpoint in {checkpoints_dir(phase)}; make one first with: "
                         f"{MAKES[phase]}") from None


def _load_model(checkpoint_dir, step, compute, model_source, make_hint):
    """Rebuild the model of one checkpoint, with a one-line refusal naming `make_hint` when it is missing."""
    try:
        if step is None:
            step = find_last_step(checkpoint_dir)
        model, tokenizer, meta = build_model(checkpoint_dir, step, compute.device, "train", model_source=model_source)
    except CheckpointError as e:
        raise SystemExit(f"error: {e} (make it with: {make_hint})") from None
    return model, tokenizer, meta, step


def open_stage(args, phase, use_compile=False):
    """Load the starting model (input phase, or this stage's own step when resuming), build the optimizers.
    Returns (stage, resume meta or None, optimizer states or None)."""
    code = learner_code.load(args)  # a learner file that cannot run fails here, before anything is loaded
    compute = setup_compute(args.device_type, use_compile)
    tag = input_tag(args.source, args.model_tag)
    out_dir = os.path.join(checkpoints_dir(phase), tag)
    model_source = None if args.model is None else model_sources.canonical(args.model)
    resume_meta, optimizer_data = None, None
    if args.resume_from_step >= 0:
        if not os.path.exists(model_path(out_dir, args.resume_from_step)):
            raise SystemExit(f"error: --resume_from_step={args.resume_from_step}: no {phase} checkpoint of that step "
                             f"in {out_dir}")
        model, tokenizer, resume_meta, _ = _load_model(out_dir, args.resume_from_step, compute, model_source,
                                                       MAKES[phase])
        _, optimizer_data, _ = load_checkpoint(out_dir, args.resume_from_step, compute.device,
                                               load_optimizer=True, rank=compute.rank)
        parent = resume_meta.get("parent", {})
        model_source = model_source or resume_meta.get("model_source", model_sources.REFERENCE)
    else:
        in_dir = os.path.join(checkpoints_dir(args.source), tag)
        model, tokenizer, meta, step = _load_model(in_dir, args.step, compute, model_source, MAKES[args.source])
        parent = {"phase": args.source, "tag": tag, "step": step}
        print0(f"starting from {args.source} checkpoint {tag} step {step} ({in_dir})")
        model_source = model_source or meta.get("model_source", model_sources.REFERENCE)
    model.train()
    optimizers = model.setup_optimizers(unembedding_lr=args.unembedding_lr, embedding_lr=args.embedding_lr,
                                        matrix_lr=args.matrix_lr, weight_decay=args.weight_decay)
    optimizers = learner_code.with_learner_optimizers(optimizers, code, compute.ddp)
    for opt in optimizers:  # the stage's peak lr is a fraction of base_train's
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] = group["initial_lr"] * args.init_lr_frac
    compiled = torch.compile(model, dynamic=False) if compute.use_compile else model
    stage = Stage(args, phase, compute, tokenizer, model.config, model, compiled, optimizers, code, tag, out_dir,
                  os.path.join(out_dir, "metrics.jsonl"), parent, model_source)
    print0(f"{phase}: {model_sources.describe(model_source)} | device {compute.device} x {compute.world_size} rank(s) "
           f"| checkpoints and metrics: {out_dir}")
    if learner_code.describe(code):
        print0(learner_code.describe(code))
    return stage, resume_meta, optimizer_data


def restore_loop(stage, resume_meta, optimizer_data):
    """The loop state to start from: fresh, or exactly the saved one (optimizer states loaded here)."""
    if stage.compute.master:
        os.makedirs(stage.checkpoint_dir, exist_ok=True)
        if resume_meta is None:
            open(stage.metrics_path, "w").close()  # a fresh run starts a fresh curve
        else:
            truncate_metrics(stage.metrics_path, resume_meta["step"])
    if resume_meta is None:
        return LoopState()
    for opt, state in zip(stage.optimizers, optimizer_data):
        opt.load_state_dict(state)
    saved = resume_meta.get("loop_state", {})
    states = saved.get("data_state")
    data_state = None
    if states is not None:
        if len(states) != stage.compute.world_size:
            raise SystemExit(f"error: step {resume_meta['step']} was saved by {len(states)} rank(s); resume it with "
                             f"the same number (torchrun --nproc_per_node={len(states)})")
        data_state = states[stage.compute.rank]
    print0(f"resumed {stage.phase} from step {resume_meta['step']} of {stage.checkpoint_dir}")
    return LoopState(step=resume_meta["step"], data_state=data_state, smooth_loss=saved.get("smooth_loss", 0.0),
                     elapsed=saved.get("elapsed_s", 0.0), best=saved.get("best", {}))


def check_resume_args(stage, resume_meta, names):
    """A resumed run must keep the flags its data position depends on."""
    if resume_meta is None:
        return
    saved = resume_meta.get("run_args", {})
    for name in names:
        if name in saved and saved[name] != getattr(stage.args, name):
            raise SystemExit(f"error: step {resume_meta['step']} was trained with --{name}={saved[name]}; resume "
                             f"with the same value (the data position depends on it)")


def save_stage(stage, loop, num_iterations):
    """Checkpoint of `loop.step`: weights, every rank's optimizer state and data position, the loop counters."""
    states = [loop.data_state]
    if stage.compute.ddp:
        import torch.distributed as dist

        states = [None] * stage.compute.world_size
        dist.all_gather_object(states, loop.data_state)
    meta = {
        "model_config": config_dict(stage.config),
        "step": loop.step,
        "model_source": stage.model_source,
        "phase": stage.phase,
        "parent": stage.parent,
        "run_args": {**vars(stage.args), "num_iterations": num_iterations},
        "loop_state": {"data_state": states if loop.data_state is not None else None,
                       "smooth_loss": loop.smooth_loss, "elapsed_s": loop.elapsed, "best": loop.best},
    }
    save_checkpoint(stage.checkpoint_dir, loop.step, stage.orig_model.state_dict(),
                    [opt.state_dict() for opt in stage.optimizers], meta, rank=stage.compute.rank)
    print0(f"saved {stage.phase} step {loop.step} to {stage.checkpoint_dir}")


def log_record(stage, record):
    if stage.compute.master:
        append_jsonl(stage.metrics_path, record)


def log_train_step(stage, loop, num_iterations, loss, dt, extra):
    """Smoothed loss, timings, the step's printed line and its metrics.jsonl record (extra: stage's own fields)."""
    loop.elapsed += dt
    loop.step_times.append(dt)
    done = loop.step + 1
    beta = 0.9
    loop.smooth_loss = beta * loop.smooth_loss + (1 - beta) * loss
    debiased = loop.smooth_loss / (1 - beta ** done)
    recent = loop.step_times[1:] if len(loop.step_times) > 1 else loop.step_times  # step 0 pays for warm-up
    eta = sum(recent) / len(recent) * (num_iterations - done)
    fields = " | ".join(f"{k} {_format_field(k, v)}" for k, v in extra.items() if v is not None)
    print0(f"step {loop.step:05d}/{num_iterations:05d} ({100 * done / num_iterations:.1f}%) | loss {loss:.6f} "
           f"(smooth {debiased:.4f}) | {fields} | dt {dt * 1000:.1f}ms | eta {format_duration(eta)}", flush=True)
    log_record(stage, {"step": loop.step, "loss": loss, "loss_smooth": debiased, **extra, "dt_ms": dt * 1000,
                       "eta_s": eta, "elapsed_s": loop.elapsed})


def _format_field(key, value):
    if key == "mfu":
        return f"{100 * value:.2f}%"
    if key == "tok_per_sec" or isinstance(value, int):
        return f"{value:,.0f}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_loop(stage, loop, num_iterations, train_step, evaluate=None, eval_every=-1):
    """Step to `num_iterations` (or a stop request): save when due, evaluate when due, then one `train_step(loop)`
    (which trains one optimizer step and logs it). Returns True when the stage finished, False when stopped."""
    save_every, start_step = stage.args.save_every, loop.step
    stop = StopFlag()
    stop.install()
    while True:
        step = loop.step
        last_step = step == num_iterations
        stop_now = any_rank(stop.requested, stage.compute)
        # save first, then evaluate: a crash in an eval must never cost the trained weights
        if last_step or stop_now or (save_every > 0 and step % save_every == 0 and step != start_step):
            save_stage(stage, loop, num_iterations)
        if stop_now and not last_step:
            print0(f"stopped at step {step}; continue with --resume_from_step={step} (and the same flags)")
            return False
        if evaluate is not None and eval_every > 0 and (last_step or step % eval_every == 0):
            evaluate(loop)
        if last_step:
            return True
        train_step(loop)
        loop.step += 1


def print_done(stage, loop):
    """The stage's last lines: steps done (and the best val bpb when it measured one), then what to run next."""
    best = f", min val bpb {loop.best['min_val_bpb']:.4f}" if "min_val_bpb" in loop.best else ""
    print0(f"done: {loop.step} steps{best}")
    print0(f"next: {next_commands(stage)}")


def next_commands(stage):
    """What to run next, for the end of a stage."""
    model_flag = "" if model_sources.is_reference(stage.model_source) else f" --model {stage.model_source}"
    return (f"python -m nanochat.scripts.chat_eval -i {stage.phase} -g {stage.model_tag}{model_flag}\n"
            f"      python -m nanochat.scripts.chat_cli -i {stage.phase} -g {stage.model_tag}{model_flag} "
            f"-p \"What is 2+2?\"")


def steady_throughput(loop, tokens_per_step):
    """Tokens per second over this process's steps after its first (which pays for warm-up and compilation)."""
    times = loop.step_times[1:] or loop.step_times
    return tokens_per_step * len(times) / sum(times) if times and sum(times) > 0 else None


def report_items(stage, loop, num_iterations, tokens_per_step=None):
    """The common part of a stage's report section."""
    items = {"model": model_sources.describe(stage.model_source), "tag": stage.model_tag,
             "started from": f"{stage.parent.get('phase')} step {stage.parent.get('step')}",
             "device": f"{stage.compute.device} x {stage.compute.world_size}",
             "steps": f"{loop.step} of {num_iterations}", "training time s": round(loop.elapsed, 1)}
    if tokens_per_step is not None:
        items["tokens"] = loop.step * tokens_per_step
        items["tokens per second (after step 0)"] = steady_throughput(loop, tokens_per_step)
    items.update(loop.best)
    return items


def run_main(train, args):
    """Run a stage's `train(args)`, turning the errors a user can fix into one line (no traceback)."""
    try:
        train(args)
    except (CheckpointError, ModelSourceError) as e:
        raise SystemExit(f"error: {e}") from None
    except NotImplementedError as e:
        if args.model is None or model_sources.is_reference(args.model):
            stop_if_learners(e)
            raise
        # a learner file that is still partly skeleton: name what is missing, not a traceback
        raise SystemExit(f"error: {model_sources.describe(args.model)} does not implement everything this stage "
                         f"needs yet: {e or 'NotImplementedError'}") from None
    except KeyboardInterrupt:
        raise SystemExit("interrupted") from None
    except Exception as e:
        stop_if_learners(e)
        raise
    finally:
        compute_cleanup()


def stop_if_learners(exc: Exception) -> None:
    """An exception raised inside a learner's file (--model, --optimizer, --training) ends the run in one line
    saying where, as base_train does; anything else (ours, a collective that failed) surfaces as it is."""
    where = model_sources.learner_failure(exc)
    if where is not None and not from_a_collective(exc):
        raise SystemExit(f"error: your code stopped training at {where}") from None
