"""The training track's contract: learner_training.py, made from nanochat/training.py, and its challenges.

The learner writes the learning-rate schedule, Muon's momentum warmup, gradient accumulation over micro-batches
and the optimizer step (clipping, learning rates and momentum set on the groups, stepping, clearing the
gradients). Everything else in the module (where the run happens, metrics, Ctrl-C handling) is copied as it is.
base_train takes these four functions from a learner's file with `--training FILE`.
Light: imports no torch (init, --list and the TUI read it at start-up).
"""

from workbench.course.challenges import Challenge
from workbench.tracks.base import Exercise, Track, TrackFile, TrackSpec

LESSON = "20-training-step.md"
REFERENCE = "nanochat.training"

EXERCISES = (
    Exercise("lr_multiplier", "the reference's schedule at every step of four runs", LESSON,
             todo="return the learning-rate multiplier for this step (warmup, flat, warmdown)",
             notes="In:  step (0 .. num_iterations), the run's length and its three fractions.  Out: a float.\n"
                   "Warmup over round(warmup_ratio * num_iterations) steps: (step + 1) / warmup; then 1; over the\n"
                   "last round(warmdown_ratio * num_iterations) steps a straight line down to final_lr_frac."),
    Exercise("muon_momentum", "the reference's momentum at every step", LESSON,
             todo="return Muon's momentum for this step (0.85 -> 0.95 over MOMENTUM_WARMUP_STEPS)"),
    Exercise("accumulate_gradients", "gradients, loss and loader states of 3 micro-batches like the reference",
             LESSON,
             todo="forward and backward over accum_steps micro-batches; return (mean loss, state, next batch)",
             notes="In:  batch, (inputs, targets, loader state after it), already fetched; loader, an iterator of\n"
                   "     such batches; autocast_ctx, a context manager for each forward pass.\n"
                   "Out: (the mean loss as a tensor, the state of the last batch trained on, the next batch).\n"
                   "Fetch the next batch after each micro-step; the summed gradients equal the mean loss's."),
    Exercise("optimizer_step", "clips, sets lr and momentum, steps and clears like the reference", LESSON,
             todo="clip (0 = off), set each group's lr and Muon's momentum, step every optimizer, clear the grads"),
)

SPEC = TrackSpec(
    track=Track.TRAINING,
    title="Training: the schedule and the optimizer step",
    files=(TrackFile("learner_training.py", REFERENCE, EXERCISES, "workbench.tracks.training.probes"),),
)

_CLIP = ("    if grad_clip > 0:\n"
         "        # under torchrun each rank clips its own gradient before the optimizers average them (as nanochat\n"
         "        # does); with one process this is exactly the global norm\n"
         "        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)\n")

CHALLENGES = (
    Challenge(
        "rising-finish", "The learning rate drops when the warmdown starts and climbs back by the end",
        "lr_multiplier",
        (("    progress = (num_iterations - step) / warmdown",
          "    progress = 1 - (num_iterations - step) / warmdown"),),
        ("Over the warmdown the multiplier should go smoothly from 1 to final_lr_frac. Which end is which?",
         "In lr_multiplier, work out `progress` at the first step of the warmdown and at the last step."),
        source="nanochat/training.py"),
    Challenge(
        "loud-accumulation", "More accumulation steps act like a larger learning rate", "accumulate_gradients",
        (("        (loss / accum_steps).backward()", "        loss.backward()"),),
        ("backward() adds into .grad. What do n micro-batches add up to, next to the gradient of their mean?",
         "In accumulate_gradients, look at what backward() is called on."),
        source="nanochat/training.py"),
    Challenge(
        "late-clip", "Gradient spikes still reach the weights", "optimizer_step",
        ((_CLIP, ""),
         ("        opt.step()\n    model.zero_grad", "        opt.step()\n" + _CLIP + "    model.zero_grad")),
        ("Clipping protects an update from one bad batch. Which gradients does the update use?",
         "In optimizer_step, put the steps in the order the optimizers need them."),
        source="nanochat/training.py"),
    Challenge(
        "runaway-momentum", "Late in training the Muon updates start to wander", "muon_momentum",
        (("    frac = min(step / MOMENTUM_WARMUP_STEPS, 1.0)", "    frac = step / MOMENTUM_WARMUP_STEPS"),),
        ("Momentum 0.95 keeps 95% of the last direction. What happens past 1?",
         "In muon_momentum, follow frac for a step well after the warmup."),
        source="nanochat/training.py"),
)
