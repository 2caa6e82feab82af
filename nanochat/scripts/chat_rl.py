"""Reinforcement learning on maths word problems (GSM8K), nanochat's simplified GRPO.

    python -m nanochat.scripts.chat_rl                                   # the latest sft checkpoint
    python -m nanochat.scripts.chat_rl --data offline --num_iterations=4 --examples_per_step=2 --num_samples=4
    torchrun --standalone --nproc_per_node=8 -m nanochat.scripts.chat_rl

Each step, every rank takes its share of `--examples_per_step` problems (rank r: problems r, r+W, ... of the
step's block, so the data position is the step number). For each problem the Engine samples
`--num_samples` answers (calculator calls run as at inference); the task scores each (1 right, 0 wrong); the
advantage of an answer is its reward minus the problem's mean reward; the loss is -(advantage x log p) over the
tokens the model sampled (nanochat.posttrain.rl). The learning rate starts at `--init_lr_frac` of
base_train's and falls linearly to 0. Training reward and pass@k (at least one of the k answers right) are
logged every step; every `--eval_every` steps pass@1..k is measured on `--eval_examples` held-out problems.

Sampling seeds come from the step and the problem, so `--resume_from_step` continues exactly. Checkpoints go
to `rl_checkpoints/<tag>/`, metrics to its metrics.jsonl.
"""

import dataclasses
import functools

import torch

from nanochat.common import positive_int, print0
from nanochat.engine import Engine
from nanochat.posttrain import mixtures
from nanochat.posttrain.rl import advantages, pass_at_k, policy_gradient_loss, rollout_batch
from nanochat.posttrain.stage import (Stage, check_resume_args, check_stage_args, log_record, log_train_step,
                                      open_stage, print_done, report_items, restore_loop, run_loop, run_main,
                                      stage_parser, StageFlags)
from nanochat.training import Timer, mean_over_ranks

EVAL_SEED = 1_000_000_007  # eval samples use seeds of their own, apart from every training step's


def parse_args(argv=None):
    p, g = stage_parser("python -m nanochat.scripts.chat_rl", __doc__.split("\n")[0], ("sft", "mid"), StageFlags(
        data_help="full: GSM8K (downloaded); offline: generated GSM8K-style problems",
        iterations_help="optimizer steps; -1 = from --num_epochs", init_lr_frac=0.05, eval_every=60,
        eval_help="steps between pass@k evals; -1 = never"))
    g = p.add_argument_group("rollouts")
    g.add_argument("--num_samples", type=positive_int, default=16, help="answers sampled per problem")
    g.add_argument("--max_new_tokens", type=positive_int, default=256, help="longest answer")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    g.add_argument("--top_k", type=positive_int, default=50, help="sample among the k likeliest tokens")
    g.add_argument("--examples_per_step", type=positive_int, default=16, help="problems per optimizer step")
    g.add_argument("--device_batch_size", type=positive_int, default=8, help="answers per forward/backward")
    g.add_argument("--num_epochs", type=positive_int, default=1, help="passes over the problems")
    g.add_argument("--eval_examples", type=positive_int, default=400, help="held-out problems per eval")
    args = p.parse_args(argv)
    check_stage_args(p, args)
    if args.temperature <= 0:
        p.error(f"--temperature must be > 0 (RL needs different answers to compare), got {args.temperature}")
    return args


@dataclasses.dataclass
class RLRun:
    stage: Stage
    engine: Engine
    train_task: object
    val_task: object
    num_iterations: int
    examples_per_rank: int
    momentum: float


def sample_answers(run, task, conversation, num_samples, seed):
    """(rows, masks, rewards): `num_samples` sampled answers to one of `task`'s problems and its verdict on each."""
    stage, args = run.stage, run.stage.args
    tokenizer = stage.tokenizer
    prompt = tokenizer.render_for_completion(conversation)
    stage.orig_model.eval()
    with stage.compute.autocast_ctx:
        rows, masks = run.engine.generate_batch(prompt, num_samples=num_samples, max_tokens=args.max_new_tokens,
                                                temperature=args.temperature, top_k=args.top_k, seed=seed)
    stage.orig_model.train()
    rewards = [float(task.evaluate(conversation, tokenizer.decode(row[len(prompt):]))) for row in rows]
    return rows, masks, rewards


def backward_on_answers(run, rows, masks, rewards):
    """Accumulate the policy gradient of one problem's answers (weighted so a step averages its problems).
    Returns the problem's loss."""
    stage, args = run.stage, run.stage.args
    adv = advantages(rewards).to(stage.compute.device)
    pad_id = stage.tokenizer.encode_special("<|assistant_end|>")
    total = 0.0
    for start in range(0, len(rows), args.device_batch_size):
        chunk = slice(start, start + args.device_batch_size)
        inputs, targets = rollout_batch(rows[chunk], masks[chunk], pad_id, device=stage.compute.device)
        with stage.compute.autocast_ctx:
            token_loss = stage.model(inputs, targets, loss_reduction="none").view(inputs.shape)
        loss = policy_gradient_loss(-token_loss.float(), targets, adv[chunk])
        weight = len(rows[chunk]) / len(rows) / run.examples_per_rank
        (loss * weight).backward()
        total += loss.item() * len(rows[chunk]) / len(rows)
    return total


def train_step(run, loop):
    """Sample, score and learn from this step's problems; one optimizer step."""
    stage, compute, args = run.stage, run.stage.compute, run.stage.args
    code = stage.code.training  # the learner's schedule and step with --training, else nanochat.training's
    world = compute.world_size
    with Timer(compute) as timer:
        losses, rewards_all, outcomes, lengths = [], [], [], []
        for k in range(run.examples_per_rank):
            index = (loop.step * args.examples_per_step + compute.rank + k * world) % len(run.train_task)
            conversation = run.train_task[index]
            rows, masks, rewards = sample_answers(run, run.train_task, conversation, args.num_samples,
                                                  seed=loop.step * args.examples_per_step * args.num_samples + index)
            losses.append(backward_on_answers(run, rows, masks, rewards))
            rewards_all += rewards
            outcomes.append([r > 0 for r in rewards])
            lengths += [sum(m) for m in masks]
        lrm = code.lr_multiplier(loop.step, run.num_iterations, 0.0, 1.0, 0.0)
        code.optimizer_step(stage.orig_model, stage.optimizers, stage.optimizers[1], lrm, run.momentum, args.grad_clip)
        device = compute.device
        loss = mean_over_ranks(torch.tensor(sum(losses) / len(losses), device=device), compute)
        reward = mean_over_ranks(torch.tensor(sum(rewards_all) / len(rewards_all), device=device), compute)
        solved = mean_over_ranks(torch.tensor(pass_at_k(outcomes, args.num_samples), device=device), compute)
        length = mean_over_ranks(torch.tensor(sum(lengths) / len(lengths), device=device, dtype=torch.float32),
                                 compute)
    log_train_step(stage, loop, run.num_iterations, loss, timer.seconds,
                   {"lr_mult": lrm, "reward": reward, f"pass@{args.num_samples}": solved,
                    "sampled_tokens": length})


def evaluate(run, loop):
    """pass@1..k over `--eval_examples` held-out problems (ranks split them; counts summed)."""
    stage, compute, args = run.stage, run.stage.compute, run.stage.args
    n = min(args.eval_examples, len(run.val_task))
    outcomes = []
    for index in range(compute.rank, n, compute.world_size):
        conversation = run.val_task[index]
        _, _, rewards = sample_answers(run, run.val_task, conversation, args.num_samples, seed=EVAL_SEED + index)
        outcomes.append([r > 0 for r in rewards])
    record = {"step": loop.step}
    for k in range(1, args.num_samples + 1):
        share = torch.tensor([sum(any(o[:k]) for o in outcomes), len(outcomes)], device=compute.device,
                             dtype=torch.float64)
        if compute.ddp:
            import torch.distributed as dist

            dist.all_reduce(share, op=dist.ReduceOp.SUM)
        record[f"pass@{k}"] = (share[0] / share[1]).item() if share[1] > 0 else 0.0
    loop.best["val pass@1"] = record["pass@1"]
    loop.best[f"val pass@{args.num_samples}"] = record[f"pass@{args.num_samples}"]
    print0(f"step {loop.step:05d} | " + " | ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "step")
           + f" ({n} problems)")
    log_record(stage, {**record, "elapsed_s": loop.elapsed})


def train(args):
    train_task = mixtures.load_or_refuse(mixtures.rl_task(args.data, "train"), args.data)
    val_task = mixtures.load_or_refuse(mixtures.rl_task(args.data, "val"), args.data)
    stage, resume_meta, optimizer_data = open_stage(args, "rl")
    check_resume_args(stage, resume_meta, ("examples_per_step", "num_samples", "data"))
    compute = stage.compute
    if args.examples_per_step % compute.world_size:
        raise SystemExit(f"error: --examples_per_step={args.examples_per_step} is not a multiple of the "
                         f"{compute.world_size} rank(s)")
    num_iterations = args.num_iterations
    if num_iterations < 0:
        num_iterations = max(1, len(train_task) * args.num_epochs // args.examples_per_step)
    print0(f"data: {args.data}, {len(train_task):,} problems | {args.examples_per_step} problems x "
           f"{args.num_samples} samples per step | {num_iterations} steps")
    loop = restore_loop(stage, resume_meta, optimizer_data)
    run = RLRun(stage, Engine(stage.orig_model, stage.tokenizer), train_task, val_task, num_iterations,
                args.examples_per_step // compute.world_size, stage.optimizers[1].param_groups[0]["momentum"])
    if not run_loop(stage, loop, num_iterations, functools.partial(train_step, run), functools.partial(evaluate, run),
                    args.eval_every):
        return
    from nanochat import report

    report.log_section("rl", "Reinforcement learning", {
        **report_items(stage, loop, num_iterations), "data": f"{args.data} ({len(train_task):,} problems)",
        "samples per problem": args.num_samples, "problems per step": args.examples_per_step})
    print_done(stage, loop)


def main(argv=None):
    run_main(train, parse_args(argv))


if __name__ == "__main__":
    main()
