"""The model an instrument looks at, built inside the isolated child (workbench/instruments/isolate.py).

Either a fresh model from a model file (the learner's, or the reference when the request names none), built the
way base_train builds one (n_embd 64 per layer, head dim ~128) and initialised by its own `init_weights` — or,
while that is still a TODO, by PyTorch's defaults, which is noted — or a checkpoint, through
`nanochat.checkpoint_manager.load_model` and its rule about which model file may run (a file named only by the
checkpoint runs only from inside the current directory; `--file` names one explicitly).
"""

from workbench.instruments.isolate import note, todo_of


def fresh_model(request: dict, vocab_size: int, seq_len: int, device: str = "cpu"):
    """(module, config, model) for request["file"] (None: the reference) at request["depth"]."""
    import torch

    from nanochat.model_source import load_model_module
    from workbench.course.trace import config_kwargs

    module = load_model_module(request.get("file") or "reference")
    kwargs = config_kwargs(request["depth"], vocab_size, seq_len, request.get("kv_heads"))
    config = module.GPTConfig(**kwargs)
    torch.manual_seed(request.get("seed", 0))
    with torch.device(device):
        model = module.GPT(config)
    try:
        model.init_weights()
    except NotImplementedError as e:
        if todo_of(e, request.get("file")) is None:
            raise
        note(request, "GPT.init_weights is still a TODO: the model keeps PyTorch's default initialisation")
    return module, config, model


def checkpoint_model(request: dict, device: str = "cpu"):
    """(module, config, model, tokenizer, description) of the checkpoint the request names, in eval mode."""
    import sys

    from nanochat.checkpoint_manager import load_model

    model, tokenizer, meta = load_model(request["checkpoint"], device, "eval", model_tag=request.get("model_tag"),
                                        step=request.get("step"), model_source=request.get("file"))
    module = sys.modules[type(model).__module__]
    source = request.get("file") or meta.get("model_source") or "reference"
    where = f"{request['checkpoint']} checkpoint, step {meta.get('step')}, model code: {source}"
    return module, model.config, model, tokenizer, where

