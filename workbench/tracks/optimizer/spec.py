"""The optimizer track's files and exercises: AdamW (nanochat/adamw.py) and Muon (nanochat/muon.py).

Light to import (no torch): `init --track`, `challenge --list` and the TUI read it at start-up.
"""

from workbench.course.challenges import Challenge
from workbench.tracks.base import Exercise, Track, TrackFile, TrackSpec

LESSON = "18-adamw-and-muon.md"

ADAMW = TrackFile(
    learner_file="learner_adamw.py",
    reference_module="nanochat.adamw",
    probes_module="workbench.tracks.optimizer.probes_adamw",
    exercises=(
        Exercise("adamw_step", "one update of one tensor, three steps, against the reference", LESSON,
                 todo="decay the weights, update both moments, correct their bias, take the step",
                 notes="In:  param, grad, exp_avg, exp_avg_sq: tensors of one shape (updated in place);\n"
                       "     step: the 1-based count of this update; lr, beta1, beta2, eps, weight_decay: floats.\n"
                       "Out: nothing; param, exp_avg and exp_avg_sq are changed in place.\n"
                       "Order: decoupled weight decay (param *= 1 - lr * weight_decay), then the moments,\n"
                       "then the bias-corrected step. Tensor.lerp_, mul_, addcmul_ and addcdiv_ do it in place."),
        Exercise("AdamW.step", "three steps over two parameter groups, against torch.optim.AdamW", LESSON,
                 todo="for every parameter with a gradient: create its state once, count the step, call adamw_step",
                 notes="Each parameter keeps its own state: step (an int), exp_avg and exp_avg_sq (zeros at first).\n"
                       "Parameters whose .grad is None are skipped. Read lr, betas, eps and weight_decay from\n"
                       "the parameter's group (groups may differ)."),
    ),
)

MUON = TrackFile(
    learner_file="learner_muon.py",
    reference_module="nanochat.muon",
    probes_module="workbench.tracks.optimizer.probes_muon",
    exercises=(
        Exercise("zeropower_via_newtonschulz5", "orthogonalises wide, tall and batched matrices like the reference",
                 LESSON, todo="normalise G, run `steps` quintic Newton–Schulz iterations (tall matrices transposed)",
                 notes="In:  G (..., m, n), a matrix or a batch of matrices; steps: iterations; dtype: the precision\n"
                       "     to iterate in (None: default_ns_dtype(G.device)).\n"
                       "Out: (..., m, n) in G's dtype, singular values close to 1, singular vectors those of G.\n"
                       "Work on the wide orientation (m <= n: X @ X.mT is the small m x m matrix); divide by the\n"
                       "Frobenius norm first so no singular value is above 1; use NS_COEFFS. .mT transposes the\n"
                       "last two dimensions of a batch."),
        Exercise("update_scale", "the step-size factor for tall, wide, square and batched shapes", LESSON,
                 todo="sqrt(max(1, rows / cols)) of the last two dimensions",
                 notes="In:  shape, a torch.Size (..., rows, cols).  Out: a float >= 1."),
        Exercise("muon_update", "three steps of momentum + Newton–Schulz on matrices of two shapes", LESSON,
                 todo="keep a momentum buffer per matrix, take the (Nesterov) direction, orthogonalise it per shape, "
                      "step by -lr * update_scale",
                 notes="In:  params, grads: lists of matrices; states: one dict per matrix (keep\n"
                       "     'momentum_buffer' there); group: lr, momentum, nesterov, ns_steps; ns_dtype,\n"
                       "     ns_compile: how to run zeropower_via_newtonschulz5 (compiled_newtonschulz5()).\n"
                       "Out: nothing; params are updated in place.\n"
                       "The buffer is an exponential average: buf = lerp(buf, grad, 1 - momentum). Nesterov\n"
                       "looks ahead: the direction is lerp(grad, buf, momentum) instead of buf itself."),
        Exercise("Muon.step", "two steps of the optimizer, against the reference's Muon", LESSON,
                 todo="for every group, update the parameters that have a gradient",
                 notes="self._update(group, params) runs muon_update for one group; parameters whose .grad is\n"
                       "None are left alone."),
    ),
)

SPEC = TrackSpec(Track.OPTIMIZER, "Optimizer: AdamW and Muon", (ADAMW, MUON))

# debugging challenges on the optimizer's modules (`nanochat-workbench challenge NAME`)
CHALLENGES: tuple[Challenge, ...] = (
    Challenge(
        "no-lookahead", "Muon's momentum steers from where the weights are, not where they are going", "muon_update",
        (('directions = torch._foreach_lerp(grads, bufs, group["momentum"]) if group["nesterov"] else bufs',
          'directions = bufs'),),
        ("Nesterov momentum evaluates the step a little ahead, where the momentum is about to carry the weights.",
         "In muon_update, look at which direction goes into the orthogonalisation when group['nesterov'] is True."),
        source="nanochat/muon.py"),
    Challenge(
        "tall-steps", "Tall matrices learn more slowly than wide ones", "muon_update",
        (('alpha=-group["lr"] * update_scale(shape)', 'alpha=-group["lr"]'),),
        ("An orthogonalised update of a tall matrix has smaller entries than one of a wide matrix of the same size.",
         "In muon_update, follow the learning rate into the final in-place add."),
        source="nanochat/muon.py"),
    Challenge(
        "young-moments", "AdamW's first steps are the wrong size", "adamw_step",
        (("    bias_correction1 = 1 - beta1 ** step\n    bias_correction2 = 1 - beta2 ** step\n",
          "    bias_correction1 = 1.0\n    bias_correction2 = 1.0\n"),),
        ("Both moving averages start at zero. What does that do to them over the first few steps?",
         "In adamw_step, look at what the two averages are divided by before the step."),
        source="nanochat/adamw.py"),
    Challenge(
        "l2-decay", "The weight decay is Adam's kind, not AdamW's", "adamw_step",
        (("    param.mul_(1 - lr * weight_decay)\n", "    grad = grad + weight_decay * param\n"),),
        ("Adam with L2 regularisation and AdamW put weight_decay · param in different places.",
         "In adamw_step, follow weight_decay: does it reach the weights directly, or through the moments?"),
        source="nanochat/adamw.py"),
)
