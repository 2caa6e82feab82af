"""What the warm worker computes once and every check compares against: the reference's answers.

`build_reference()` loads the embedded-corpus tokenizer and a real batch, builds the reference GPT
(nanochat/gpt.py) at the check's depth-4 size, gives it non-zero weights everywhere (the reference
zero-initialises `lm_head` and the output projections, and a comparison at init would hide every bug behind
those zeros), runs it once with hooks, and keeps the inputs and outputs of each component: the test inputs
for `norm` and `apply_rotary_emb`, the input and output of one block's attention, MLP and the block itself,
the logits, the loss, every gradient, the optimizer groups, the FLOPs estimate and a greedy completion.

The forked check process reads the inputs from here (copy-on-write) and feeds them to the learner's code;
the worker keeps the expected outputs and judges what comes back. The learner's code never runs in the
process that builds or holds this.
"""

import math
from dataclasses import dataclass, field
from functools import partial

import torch

from nanochat import gpt as ref_gpt

# the check's model: nanochat's depth-4 shape (model_dim = 64 * depth, head_dim 128)
DEPTH4 = dict(n_layer=4, n_head=2, n_kv_head=2, n_embd=256)
# attention with shared key/value heads, checked on its own (the depth-4 model has n_kv_head == n_head)
SHARED_KV_CONFIGS = {"MQA": dict(n_head=4, n_kv_head=1, n_embd=256), "GQA": dict(n_head=4, n_kv_head=2, n_embd=256)}
ISOLATED_LAYER = 1  # the block whose attention / MLP / block inputs are captured (not 0: its input is a real mix)
LOGITS_T = 128  # prefix of the batch whose logits and per-token losses are compared
PROMPT_LEN = 16  # prompt for the generation checks: the first tokens of the batch
GEN_TOKENS = 6  # greedy tokens generated in the generation checks
KV_PREFIX = 8  # the isolated KV-cache checks prefill this many tokens, then decode one
SEED = 1337
# experiments: the learner's model and the reference trained side by side on a stream of fresh batches
EXPERIMENT_STEPS = 30
EXPERIMENT_T = 128  # tokens per step (batch 1): ~0.15 s a step for the depth-4 model on one CPU thread
EXPERIMENT_VAL_ROWS = 4  # held-out batch (EXPERIMENT_VAL_ROWS, EXPERIMENT_T) for the final losses
EXPERIMENT_LR = 3e-3  # AdamW on every parameter, for both models (Muon's Newton–Schulz costs ~0.7 s a step on CPU)


@dataclass
class Reference:
    seq_len: int
    vocab_size: int
    config_kwargs: dict
    config_fields: dict  # name -> default of the reference GPTConfig
    tokenizer_name: str
    inputs: torch.Tensor  # (1, T) token ids
    targets: torch.Tensor  # (1, T)
    model: torch.nn.Module  # the reference with the shared non-zero weights (its copies stand in for learner parts)
    weights: dict  # name -> tensor, the shared weights
    param_shapes: dict  # name -> shape, reference GPT
    state_keys: list  # keys of the reference state_dict (no rotary buffers: they are not persistent)
    buffer_shapes: dict  # cos/sin shapes
    block_param_shapes: dict  # Block(config, i) parameter names -> shape
    attn_param_shapes: dict  # config name ("depth4", "MQA", "GQA") -> {name: shape}
    mlp_param_shapes: dict
    init_rule_std: dict  # name -> std after _init_weights alone
    init_final: dict  # name -> {"std", "zero"} after init_weights
    rotary_args: tuple  # (seq_len, head_dim) the model precomputes
    rotary: tuple  # the reference's (cos, sin), float32
    rotary_exact: tuple  # the same table computed in float64
    norm_cases: list  # [(x, expected)]
    rotary_cases: list  # [(x, cos, sin, expected)]
    acts: dict  # layer ISOLATED_LAYER: block_in, attn_in, attn_out, mlp_in, mlp_out, block_out; cos_sin (T)
    shared_kv_cases: dict  # "MQA"/"GQA" -> {"config", "module", "x", "cos_sin", "out"}
    logits: torch.Tensor  # (1, LOGITS_T, V)
    loss: float  # mean loss over the whole batch
    loss_none: torch.Tensor  # (LOGITS_T,) per-token losses of the prefix
    grads: dict  # name -> gradient of the mean loss over the LOGITS_T prefix
    grad_scale: dict  # name -> max |gradient|
    optimizers: list  # describe_optimizers() of the reference's setup_optimizers()
    flops: float
    prompt: list
    greedy: list  # GEN_TOKENS greedy tokens after the prompt, uncached
    greedy_logits: torch.Tensor  # (GEN_TOKENS, V) logits that chose them
    ln_vocab: float
    stream: tuple  # (inputs, targets), each (EXPERIMENT_STEPS, 1, EXPERIMENT_T): one fresh batch per training step
    held_out: tuple  # (inputs, targets), each (EXPERIMENT_VAL_ROWS, EXPERIMENT_T), from the validation split
    timings: dict = field(default_factory=dict)
    cache64: dict = field(default_factory=dict)  # float64 reference outputs, computed when a check needs them

    def config(self, module=ref_gpt, **overrides):
        kw = dict(self.config_kwargs)
        kw.update(overrides)
        return module.GPTConfig(**kw)


def describe_optimizers(optimizers, model) -> list:
    """Optimizers as plain data: class, and per group the parameter names, lr and the other settings."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = []
    for opt in optimizers:
        mro = [c.__name__ for c in type(opt).__mro__]
        groups = []
        for g in getattr(opt, "param_groups", []):
            settings = {k: v for k, v in g.items() if k != "params" and isinstance(v, (int, float, bool, tuple, str, type(None)))}
            settings = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
            groups.append({"params": [names.get(id(p), f"<tensor {tuple(p.shape)} not in the model>") for p in g["params"]],
                           **settings})
        out.append({"class": type(opt).__name__, "mro": mro, "groups": groups})
    return out


def rotary_exact(seq_len: int, head_dim: int, base: float = 10000.0):
    """The rotary table in float64 (the RoPE formula: angle = position * base^(-2i/D)), to measure fp32 error."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    return angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]


def _param_shapes(module) -> dict:
    return {n: tuple(p.shape) for n, p in module.named_parameters()}


def load_batch(seq_len: int):
    """The tokenizer and the first training batch of the embedded corpus, (1, seq_len) inputs and targets."""
    from nanochat.tokenizer import get_tokenizer

    tokenizer = get_tokenizer()
    (inputs, targets), = _batches(tokenizer, 1, seq_len, "train", 1)
    return tokenizer, inputs, targets


def _batches(tokenizer, rows: int, seq_len: int, split: str, n: int) -> list:
    """The first `n` (inputs, targets) batches of the embedded corpus's `split`."""
    from nanochat.dataloader import tokenizing_distributed_data_loader

    loader = tokenizing_distributed_data_loader(rows, seq_len, split, tokenizer_threads=1, source="embedded",
                                                tokenizer=tokenizer)
    batches = [next(loader) for _ in range(n)]
    loader.close()
    return batches


def experiment_data(tokenizer) -> tuple:
    """The experiments' training stream and held-out batch (see Reference.stream / held_out)."""
    stream = _batches(tokenizer, 1, EXPERIMENT_T, "train", EXPERIMENT_STEPS)
    (val,) = _batches(tokenizer, EXPERIMENT_VAL_ROWS, EXPERIMENT_T, "val", 1)
    return (torch.stack([x for x, _ in stream]), torch.stack([y for _, y in stream])), val


def shared_adamw(model) -> list:
    """The optimizer both sides of an experiment train with: AdamW at one learning rate on every parameter."""
    return [torch.optim.AdamW(model.parameters(), lr=EXPERIMENT_LR, betas=(0.9, 0.95), weight_decay=0.0)]


def train_curve(model, optimizers, stream, held_out, progress=None) -> tuple[list[float], float]:
    """Train `model` one step per batch of `stream`; the loss at each step (before its update) and the mean
    loss on `held_out` after the last one. `progress(step)` is called before every step."""
    inputs, targets = stream
    losses = []
    model.train()
    for step in range(inputs.size(0)):
        if progress is not None:
            progress(step)
        loss = model(inputs[step].clone(), targets[step].clone())
        losses.append(float(loss.detach()))
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        final = float(model(held_out[0].clone(), held_out[1].clone()).detach())
    return losses, final


def initial_model(config):
    """The reference model both sides of an experiment start from: seeded, built and initialised."""
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = ref_gpt.GPT(config)
        model.init_weights()
    return model


def reference_curve(ref, optimizer_setup=shared_adamw) -> tuple[list[float], float]:
    """The reference's side of an experiment (computed in the worker, once per optimizer setup)."""
    model = initial_model(ref.config())
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        return train_curve(model, optimizer_setup(model), ref.stream, ref.held_out)


def build_reference(seq_len: int = 512, data_loaded=None) -> Reference:
    """Everything the checks compare against; `data_loaded()` is called once the tokenizer and batch are ready."""
    import time
    t0 = time.perf_counter()
    tokenizer, inputs, targets = load_batch(seq_len)
    stream, held_out = experiment_data(tokenizer)
    t_data = time.perf_counter() - t0
    if data_loaded is not None:
        data_loaded()
    vocab = tokenizer.get_vocab_size()
    config_kwargs = dict(sequence_len=seq_len, vocab_size=vocab, **DEPTH4)
    model, init_final, init_rule_std = _shared_model(ref_gpt.GPTConfig(**config_kwargs))
    weights = {n: p.detach().clone() for n, p in model.state_dict().items()}
    acts, loss = _block_activations(model, inputs, targets)
    grads, logits, loss_none = _gradients_and_logits(model, inputs, targets)
    acts["cos_sin"] = (model.cos[:, :inputs.size(1)].clone(), model.sin[:, :inputs.size(1)].clone())
    optimizers = describe_optimizers(model.setup_optimizers(), model)
    flops = float(model.estimate_flops())
    prompt, greedy, greedy_logits = _greedy_decoding(model, inputs)
    gen = torch.Generator().manual_seed(SEED + 2)  # the random inputs below, drawn in this order
    norm_cases, rotary_cases = _function_cases(model, gen)
    shared_kv = _shared_kv_cases(model, config_kwargs, gen)

    rotary_args = (model.rotary_seq_len, model.config.n_embd // model.config.n_head)
    ref = Reference(
        seq_len=seq_len, vocab_size=vocab, config_kwargs=config_kwargs,
        config_fields={f.name: f.default for f in ref_gpt.GPTConfig.__dataclass_fields__.values()},
        tokenizer_name=f"embedded-corpus BPE, vocab {vocab}",
        inputs=inputs, targets=targets, model=model, weights=weights,
        param_shapes=_param_shapes(model), state_keys=list(model.state_dict().keys()),
        buffer_shapes={"cos": tuple(model.cos.shape), "sin": tuple(model.sin.shape)},
        block_param_shapes=_param_shapes(model.transformer.h[0]),
        attn_param_shapes={"depth4": _param_shapes(model.transformer.h[0].attn),
                           **{k: _param_shapes(v["module"]) for k, v in shared_kv.items()}},
        mlp_param_shapes=_param_shapes(model.transformer.h[0].mlp),
        init_rule_std=init_rule_std, init_final=init_final,
        rotary_args=rotary_args, rotary=(model.cos.clone(), model.sin.clone()),
        rotary_exact=rotary_exact(*rotary_args),
        norm_cases=norm_cases, rotary_cases=rotary_cases, acts=acts, shared_kv_cases=shared_kv,
        logits=logits, loss=float(loss), loss_none=loss_none, grads=grads,
        grad_scale={n: float(g.abs().max()) for n, g in grads.items()}, optimizers=optimizers, flops=flops,
        prompt=prompt, greedy=greedy, greedy_logits=torch.stack(greedy_logits),
        ln_vocab=math.log(vocab), stream=stream, held_out=held_out,
    )
    ref.timings = {"data_s": t_data, "total_s": time.perf_counter() - t0}
    return ref


def _shared_model(config):
    """The reference model with the weights every check shares, and the init statistics on the way: the
    reference's init_weights, then the rule alone (_init_weights everywhere, no zeros)."""
    torch.manual_seed(SEED)
    model = ref_gpt.GPT(config)
    model.init_weights()
    init_final = {n: {"std": float(p.float().std()), "zero": bool((p == 0).all())} for n, p in model.named_parameters()}
    torch.manual_seed(SEED + 1)
    model.apply(model._init_weights)
    init_rule_std = {n: float(p.float().std()) for n, p in model.named_parameters()}
    # the shared weights: the init rule everywhere, and a bigger lm_head so the softcap has work to do
    with torch.no_grad():
        model.lm_head.weight.mul_(5.0)
    model.eval()
    return model, init_final, init_rule_std


def _block_activations(model, inputs, targets):
    """One block's inputs and outputs (and its attention's and MLP's), captured on the real batch; the loss."""
    acts = {}
    block = model.transformer.h[ISOLATED_LAYER]
    hooks = []
    for name, module in (("block", block), ("attn", block.attn), ("mlp", block.mlp)):
        hooks.append(module.register_forward_pre_hook(partial(_keep_input, acts, f"{name}_in")))
        hooks.append(module.register_forward_hook(partial(_keep_output, acts, f"{name}_out")))
    with torch.no_grad():
        loss = model(inputs, targets)
    for h in hooks:
        h.remove()
    return acts, loss


def _keep_input(acts, key, module, args):
    acts[key] = args[0].detach().clone()


def _keep_output(acts, key, module, args, output):
    acts[key] = output.detach().clone()


def _gradients_and_logits(model, inputs, targets):
    """Gradients of the mean loss over the LOGITS_T prefix (the whole-model check runs on that prefix), and
    the logits and per-token losses there."""
    model(inputs[:, :LOGITS_T], targets[:, :LOGITS_T]).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        logits = model(inputs[:, :LOGITS_T]).detach().clone()
        loss_none = model(inputs[:, :LOGITS_T], targets[:, :LOGITS_T], loss_reduction="none").detach().clone().view(-1)
    return grads, logits, loss_none


def _greedy_decoding(model, inputs):
    """GEN_TOKENS greedy tokens from the batch's first PROMPT_LEN tokens, without a cache, with their logits."""
    prompt = inputs[0, :PROMPT_LEN].tolist()
    ids = inputs[:, :PROMPT_LEN].clone()
    greedy, greedy_logits = [], []
    with torch.no_grad():
        for _ in range(GEN_TOKENS):
            last = model(ids)[:, -1, :]
            nxt = int(last.argmax(-1))
            greedy.append(nxt)
            greedy_logits.append(last[0].clone())
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return prompt, greedy, greedy_logits


def _function_cases(model, gen):
    """norm and apply_rotary_emb on random inputs, with the reference's outputs."""
    head_dim = model.config.n_embd // model.config.n_head
    norm_cases = []
    for shape, scale, shift in (((2, 16, 2, head_dim), 3.0, 0.5), ((1, 8, model.config.n_embd), 1.0, -0.25)):
        x = torch.randn(shape, generator=gen) * scale + shift
        norm_cases.append((x, ref_gpt.norm(x)))
    rotary_cases = []
    x = torch.randn(2, 16, 2, head_dim, generator=gen)
    cos, sin = model.cos[:, 100:116], model.sin[:, 100:116]
    rotary_cases.append((x, cos.clone(), sin.clone(), ref_gpt.apply_rotary_emb(x, cos, sin)))
    cos64, sin64 = model._precompute_rotary_embeddings(32, 64)
    x = torch.randn(1, 32, 4, 64, generator=gen)
    rotary_cases.append((x, cos64, sin64, ref_gpt.apply_rotary_emb(x, cos64, sin64)))
    return norm_cases, rotary_cases


def _shared_kv_cases(model, config_kwargs, gen):
    """Attention with shared key/value heads (GQA, MQA), on its own: module, input, rotary tables, output."""
    shared_kv = {}
    for name, kw in SHARED_KV_CONFIGS.items():
        cfg = ref_gpt.GPTConfig(**{**config_kwargs, **kw})
        torch.manual_seed(SEED + 3)
        attn = ref_gpt.CausalSelfAttention(cfg, 0).eval()
        xs = torch.randn(1, 32, cfg.n_embd, generator=gen)
        c, s = model._precompute_rotary_embeddings(32, cfg.n_embd // cfg.n_head)
        with torch.no_grad():
            out = attn(xs, (c, s), None)
        shared_kv[name] = {"config": kw, "module": attn, "x": xs, "cos_sin": (c, s), "out": out}
    return shared_kv
