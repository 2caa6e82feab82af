"""The inference engine: the KV cache, sampling, cached generation against the uncached reference, batched
samples from one prefill, and the calculator tool (forced tokens) with a real tokenizer."""

import shutil

import pytest
import torch

from nanochat import gpt as gpt_module
from nanochat import model_source
from nanochat.engine import Engine, KVCache, sample_next_token
from nanochat.gpt import GPT, GPTConfig


def random_model(seed=0, **overrides):
    """A tiny GPT with all weights random (init_weights zeroes the head, which would make every logit equal)."""
    cfg = dict(sequence_len=64, vocab_size=97, n_layer=2, n_head=4, n_kv_head=2, n_embd=64)
    cfg.update(overrides)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**cfg))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def prompt_of(n, vocab=97, seed=1):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


# --- KVCache -------------------------------------------------------------------------------------------------


def test_kv_cache_inserts_and_advances_after_the_last_layer():
    cache = KVCache(batch_size=2, num_heads=3, seq_len=8, head_dim=4, num_layers=2)
    assert cache.get_pos() == 0
    k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    k0, v0 = cache.insert_kv(0, k, v)
    assert cache.get_pos() == 0  # layer 1 has not inserted yet
    k1, v1 = cache.insert_kv(1, 2 * k, 2 * v)
    assert cache.get_pos() == 5
    torch.testing.assert_close(k0, k)
    torch.testing.assert_close(v1, 2 * v)
    k_new = torch.randn(2, 3, 1, 4)
    k0, _ = cache.insert_kv(0, k_new, k_new)
    assert k0.shape == (2, 3, 6, 4)
    torch.testing.assert_close(k0[:, :, :5], k)
    torch.testing.assert_close(k0[:, :, 5:], k_new)
    cache.reset()
    assert cache.get_pos() == 0


def test_kv_cache_grows_past_its_initial_length():
    cache = KVCache(batch_size=1, num_heads=1, seq_len=4, head_dim=2, num_layers=1)
    chunks = [torch.randn(1, 1, 3, 2) for _ in range(3)]
    for c in chunks:
        k_all, _ = cache.insert_kv(0, c, c)
    assert cache.get_pos() == 9
    torch.testing.assert_close(k_all, torch.cat(chunks, dim=2))


def test_kv_cache_rejects_mismatched_shapes():
    cache = KVCache(batch_size=2, num_heads=3, seq_len=8, head_dim=4, num_layers=1)
    with pytest.raises(ValueError, match="inserted keys of shape"):
        cache.insert_kv(0, torch.randn(1, 3, 2, 4), torch.randn(1, 3, 2, 4))


def test_prefill_copies_a_batch_one_cache_into_every_row():
    one = KVCache(batch_size=1, num_heads=2, seq_len=5, head_dim=4, num_layers=2)
    ks = [torch.randn(1, 2, 5, 4) for _ in range(2)]
    for layer, k in enumerate(ks):
        one.insert_kv(layer, k, -k)
    many = KVCache(batch_size=3, num_heads=2, seq_len=9, head_dim=4, num_layers=2)
    many.prefill(one)
    assert many.get_pos() == 5
    step = torch.randn(3, 2, 1, 4)
    for layer, k in enumerate(ks):
        k_all, v_all = many.insert_kv(layer, step, step)
        assert k_all.shape == (3, 2, 6, 4)
        torch.testing.assert_close(k_all[:, :, :5], k.expand(3, -1, -1, -1))
        torch.testing.assert_close(v_all[:, :, :5], -k.expand(3, -1, -1, -1))
    with pytest.raises(ValueError, match="empty cache"):
        many.prefill(one)


# --- sampling ------------------------------------------------------------------------------------------------


def test_temperature_zero_is_argmax():
    logits = torch.randn(4, 50)
    assert sample_next_token(logits, None, temperature=0.0)[:, 0].tolist() == logits.argmax(-1).tolist()


def test_top_k_restricts_samples_to_the_k_best():
    torch.manual_seed(0)
    logits = torch.randn(1, 100)
    allowed = set(torch.topk(logits, 5).indices[0].tolist())
    rng = torch.Generator().manual_seed(0)
    drawn = {sample_next_token(logits, rng, temperature=2.0, top_k=5).item() for _ in range(300)}
    assert drawn <= allowed and len(drawn) == 5
    # top_k=1 is greedy whatever the temperature
    assert sample_next_token(logits, rng, temperature=5.0, top_k=1).item() == logits.argmax().item()


def test_sampling_follows_the_softmax_and_is_seeded():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    rng = torch.Generator().manual_seed(123)
    draws = torch.cat([sample_next_token(logits, rng, temperature=1.0) for _ in range(4000)])
    freq = torch.bincount(draws[:, 0], minlength=3).float() / 4000
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.03, rtol=0)
    again = torch.Generator().manual_seed(123)
    assert sample_next_token(logits.expand(8, -1), again).tolist() == sample_next_token(
        logits.expand(8, -1), torch.Generator().manual_seed(123)).tolist()


def test_one_generator_per_row_samples_each_row_independently():
    logits = torch.randn(3, 40)
    rngs = [torch.Generator().manual_seed(10 + i) for i in range(3)]
    together = sample_next_token(logits, rngs, temperature=1.0)[:, 0].tolist()
    alone = [sample_next_token(logits[i:i + 1], torch.Generator().manual_seed(10 + i)).item() for i in range(3)]
    assert together == alone


# --- cached generation against the uncached reference ----------------------------------------------------------


def test_chunk_after_a_cached_prefix_matches_the_full_forward():
    # prefill 10 tokens, then feed 6 at once: exercises the prefix mask (whole prefix visible, causal inside)
    model = random_model(n_kv_head=1)
    ids = torch.tensor([prompt_of(16)])
    full = model(ids)
    cache = KVCache(batch_size=1, num_heads=1, seq_len=16, head_dim=16, num_layers=2)
    with torch.inference_mode():
        first = model(ids[:, :10], kv_cache=cache)
        second = model(ids[:, 10:], kv_cache=cache)
    torch.testing.assert_close(first, full[:, :10], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(second, full[:, 10:], atol=1e-5, rtol=1e-4)
    assert cache.get_pos() == 16


@pytest.mark.parametrize("n_kv_head", [1, 2, 4], ids=["MQA", "GQA", "MHA"])
def test_cached_greedy_generation_equals_uncached_generate(n_kv_head):
    model = random_model(n_kv_head=n_kv_head)
    prompt = prompt_of(20)
    reference = list(model.generate(prompt, max_tokens=40, temperature=0.0))
    columns = [column for column, _ in Engine(model).generate(prompt, max_tokens=40, temperature=0.0)]
    assert [c[0] for c in columns] == reference
    assert len(set(reference)) > 3  # a real sequence, not one repeated token


def test_cached_sampling_equals_uncached_generate_with_the_same_seed():
    model = random_model()
    prompt = prompt_of(12)
    for temperature, top_k in [(1.0, None), (0.8, 10)]:
        reference = list(model.generate(prompt, max_tokens=30, temperature=temperature, top_k=top_k, seed=7))
        results, masks = Engine(model).generate_batch(prompt, max_tokens=30, temperature=temperature, top_k=top_k, seed=7)
        assert results[0] == prompt + reference
        assert masks[0] == [0] * len(prompt) + [1] * 30


def test_samples_from_one_prefill_equal_independent_runs():
    model = random_model()
    prompt = prompt_of(15)
    engine = Engine(model)
    batched, _ = engine.generate_batch(prompt, num_samples=4, max_tokens=25, temperature=1.0, seed=100)
    for i in range(4):
        alone, _ = engine.generate_batch(prompt, num_samples=1, max_tokens=25, temperature=1.0, seed=100 + i)
        assert batched[i] == alone[0], f"row {i}"
    assert len({tuple(r) for r in batched}) > 1  # the rows really are different samples


def test_prefill_runs_once_with_batch_one():
    model = random_model()
    batch_sizes = []
    model.transformer.h[0].register_forward_pre_hook(lambda m, args: batch_sizes.append(tuple(args[0].shape[:2])))
    list(Engine(model).generate(prompt_of(9), num_samples=3, max_tokens=4, temperature=1.0))
    assert batch_sizes == [(1, 9), (3, 1), (3, 1), (3, 1)]


def test_generate_stops_at_max_tokens_and_rejects_bad_prompts():
    model = random_model()
    assert len(list(Engine(model).generate(prompt_of(5), max_tokens=7, temperature=0.0))) == 7
    with pytest.raises(ValueError, match="list of token ids"):
        list(Engine(model).generate([], max_tokens=3))
    with pytest.raises(ValueError, match="no room"):
        list(Engine(model).generate([1] * 640, max_tokens=3))


def test_without_max_tokens_generation_runs_to_the_context_limit_growing_the_cache():
    # sequence_len 8 -> a rotary table of 80 positions; the decode cache starts at 5 + 8 and has to grow
    model = random_model(sequence_len=8)
    prompt = prompt_of(5)
    columns = [column[0] for column, _ in Engine(model).generate(prompt, temperature=0.0)]
    assert len(columns) == 80 - 5
    assert columns == list(model.generate(prompt, max_tokens=75, temperature=0.0))
    # prompt ids may be any integers (numpy, torch), not only Python ints
    assert [c[0] for c, _ in Engine(model).generate(torch.tensor(prompt), max_tokens=5, temperature=0.0)] == columns[:5]


def test_engine_runs_a_learner_model_file(tmp_path):
    path = tmp_path / "learner_gpt.py"
    shutil.copy(gpt_module.__file__, path)
    module = model_source.load_model_module(str(path))
    reference = random_model(seed=3)
    learner = module.GPT(module.GPTConfig(**vars(reference.config)))
    learner.load_state_dict(reference.state_dict())
    learner.eval()
    prompt = prompt_of(10)
    ours, _ = Engine(learner).generate_batch(prompt, max_tokens=20, temperature=0.0)
    theirs, _ = Engine(reference).generate_batch(prompt, max_tokens=20, temperature=0.0)
    assert ours == theirs


# --- the calculator tool, with a real tokenizer ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from nanochat.tokenizer import RustBPETokenizer

    text = ["The answer is 12*(3+4) = 84, and 7/2 is 3.5. Numbers: 0 1 2 3 4 5 6 7 8 9."] * 30
    return RustBPETokenizer.train_from_iterator(iter(text), 400)


class ScriptedModel(torch.nn.Module):
    """A stand-in model that 'wants' to say a fixed script of tokens, one per forward call, whatever it is fed.

    It keeps the GPT contract the Engine relies on (config, parameters, forward with kv_cache) and records
    every batch of token ids it is fed, so a test can check what the Engine forced into it. `script` is one
    list for all rows, or one list per row (the prefill, with batch 1, answers with row 0's first token).
    """

    def __init__(self, script, vocab_size):
        super().__init__()
        self.config = GPTConfig(sequence_len=256, vocab_size=vocab_size, n_layer=1, n_head=1, n_kv_head=1, n_embd=4)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.scripts = script if isinstance(script[0], list) else [script]
        self.fed = []

    def forward(self, idx, targets=None, kv_cache=None, loss_reduction="mean"):
        B, T = idx.shape
        self.fed.append(idx.tolist())
        k = torch.zeros(B, 1, T, 4)
        kv_cache.insert_kv(0, k, k)
        step = len(self.fed) - 1
        logits = torch.full((B, T, self.config.vocab_size), -10.0)
        for row in range(B):
            script = self.scripts[row % len(self.scripts)]
            logits[row, -1, script[min(step, len(script) - 1)]] = 10.0
        return logits


def test_calculator_result_is_forced_with_mask_zero(tokenizer):
    special = tokenizer.encode_special
    expr = tokenizer.encode("12*(3+4)")
    answer = tokenizer.encode(" The answer")
    filler = 0  # what the model 'would have said' while the output is forced; the Engine must ignore it
    forced = [special("<|output_start|>")] + tokenizer.encode("84") + [special("<|output_end|>")]
    script = [special("<|python_start|>")] + expr + [special("<|python_end|>")] + [filler] * len(forced) + answer + [
        special("<|assistant_end|>")]
    model = ScriptedModel(script, tokenizer.get_vocab_size())
    prompt = [tokenizer.get_bos_token_id(), special("<|assistant_start|>")]
    results, masks = Engine(model, tokenizer).generate_batch(prompt, num_samples=2, max_tokens=60, temperature=1.0)
    completion = [special("<|python_start|>")] + expr + [special("<|python_end|>")] + forced + answer
    for row, mask in zip(results, masks):
        assert row == prompt + completion  # <|assistant_end|> ends the row and is left out
        n = 2 + len(expr)
        assert mask == [0, 0] + [1] * n + [0] * len(forced) + [1] * len(answer)
    assert "<|output_start|>84<|output_end|>" in tokenizer.decode(results[0])
    # the model was fed the forced tokens, one per step, in both rows
    fed = [step[0][0] for step in model.fed[1:]]
    assert fed[n:n + len(forced)] == forced


@pytest.mark.parametrize("expression", ["__import__('os')", "2**100", "3 +", "x*2"])
def test_no_result_means_nothing_is_forced(tokenizer, expression):
    special = tokenizer.encode_special
    expr = tokenizer.encode(expression)
    script = [special("<|python_start|>")] + expr + [special("<|python_end|>"), 5, 6, special("<|assistant_end|>")]
    model = ScriptedModel(script, tokenizer.get_vocab_size())
    results, masks = Engine(model, tokenizer).generate_batch([tokenizer.get_bos_token_id()], max_tokens=60)
    assert results[0][1:] == script[:-1]
    assert all(masks[0][1:])


def test_rows_stop_at_bos_or_assistant_end_and_the_stream_runs_until_all_are_done(tokenizer):
    bos, end = tokenizer.get_bos_token_id(), tokenizer.encode_special("<|assistant_end|>")
    scripts = [[7, bos, 1, 1, 1, 1], [7, 8, 9, end, 1, 1]]
    engine = Engine(ScriptedModel(scripts, tokenizer.get_vocab_size()), tokenizer)
    columns = [column for column, _ in engine.generate([bos], num_samples=2, max_tokens=50)]
    assert columns == [[7, 7], [bos, 8], [1, 9], [1, end]]
    engine = Engine(ScriptedModel(scripts, tokenizer.get_vocab_size()), tokenizer)
    results, masks = engine.generate_batch([bos], num_samples=2, max_tokens=50)
    assert results == [[bos, 7], [bos, 7, 8, 9]]
    assert masks == [[0, 1], [0, 1, 1, 1]]
    # max_tokens cuts a row that never ends
    engine = Engine(ScriptedModel([5], tokenizer.get_vocab_size()), tokenizer)
    assert engine.generate_batch([bos], max_tokens=6)[0] == [[bos, 5, 5, 5, 5, 5, 5]]


def test_bench_decode_prints_both_speeds_and_checks_the_tokens_agree(capsys):
    from nanochat.scripts import bench_decode

    rc = bench_decode.main(["--depth", "1", "--vocab_size", "300", "--prompt_tokens", "16", "--new_tokens", "8"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "without KV cache (GPT.generate):" in out and "with KV cache (Engine):" in out
    assert "speedup:" in out and "same tokens: yes" in out
    with pytest.raises(SystemExit, match="does not exist"):
        bench_decode.main(["--model", "/no/such/model.py", "--depth", "1"])
