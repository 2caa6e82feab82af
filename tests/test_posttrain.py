"""Mid-training packing, SFT masking and the RL pieces, against values worked out by hand."""

import pytest
import torch

from nanochat.posttrain.batches import PackPosition, collate_sft, packed_batch, read_window
from nanochat.posttrain.rl import advantages, pass_at_k, policy_gradient_loss, rollout_batch

CONVERSATIONS = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10, 11, 12]]


def conversation_tokens(index):
    return CONVERSATIONS[index % len(CONVERSATIONS)]


def test_windows_share_one_token_and_restart_where_the_last_one_was():
    tokens, restart = read_window(conversation_tokens, PackPosition(0, 0), 4)
    assert tokens == [1, 2, 3, 4] and restart == PackPosition(1, 0)  # token 4 is conversation 1, offset 0
    tokens, restart = read_window(conversation_tokens, restart, 4)
    assert tokens == [4, 5, 6, 7] and restart == PackPosition(2, 1)  # token 7
    tokens, restart = read_window(conversation_tokens, restart, 4)
    assert tokens == [7, 8, 9, 10] and restart == PackPosition(3, 0)
    tokens, restart = read_window(conversation_tokens, restart, 6)  # wraps into the next epoch (index 4)
    assert tokens == [10, 11, 12, 1, 2, 3] and restart == PackPosition(4, 2)


def test_packed_batch_rows_and_shifted_targets():
    inputs, targets, nxt = packed_batch(conversation_tokens, PackPosition(0, 0), rows=2, seq_len=2)
    assert inputs.tolist() == [[1, 2], [3, 4]]
    assert targets.tolist() == [[2, 3], [4, 5]]
    assert nxt == PackPosition(1, 1)  # token 5 starts the next batch
    inputs, targets, _ = packed_batch(conversation_tokens, nxt, rows=2, seq_len=2)
    assert inputs.tolist() == [[5, 6], [7, 8]] and targets.tolist() == [[6, 7], [8, 9]]


def test_resuming_from_a_saved_position_reads_the_same_tokens():
    pos, straight = PackPosition(), []
    for _ in range(5):
        x, _, pos = packed_batch(conversation_tokens, pos, rows=1, seq_len=3)
        straight.append(x.tolist())
    pos, resumed = PackPosition(), []
    for _ in range(2):
        x, _, pos = packed_batch(conversation_tokens, pos, rows=1, seq_len=3)
        resumed.append(x.tolist())
    pos = PackPosition(**pos.to_dict())  # through the checkpoint's JSON
    for _ in range(3):
        x, _, pos = packed_batch(conversation_tokens, pos, rows=1, seq_len=3)
        resumed.append(x.tolist())
    assert resumed == straight


def test_sft_collate_pads_and_masks():
    rows = [([10, 11, 12, 13], [0, 0, 1, 1]), ([20, 21, 22], [0, 1, 0])]
    inputs, targets = collate_sft(rows, pad_id=99)
    assert inputs.tolist() == [[10, 11, 12], [20, 21, 99]]
    assert targets.tolist() == [[-1, 12, 13], [21, -1, -1]]


def test_sft_collate_rejects_mismatched_mask():
    with pytest.raises(ValueError, match="row 0"):
        collate_sft([([1, 2, 3], [0, 1])], pad_id=0)


def test_sft_targets_are_exactly_what_the_assistant_writes():
    from nanochat.tokenizer import get_tokenizer

    tokenizer = get_tokenizer()
    conversation = {"messages": [
        {"role": "user", "content": "What is 6 times 7?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me compute. "},
                                          {"type": "python", "text": "6*7"},
                                          {"type": "python_output", "text": "42"},
                                          {"type": "text", "text": "It is 42."}]},
    ]}
    ids, mask = tokenizer.render_conversation(conversation)
    _, targets = collate_sft([(ids, mask)], pad_id=tokenizer.encode_special("<|assistant_end|>"))
    trained = [t for t in targets[0].tolist() if t >= 0]
    special = tokenizer.encode_special
    expected = (tokenizer.encode("Let me compute. ") + [special("<|python_start|>")] + tokenizer.encode("6*7")
                + [special("<|python_end|>")] + tokenizer.encode("It is 42.") + [special("<|assistant_end|>")])
    assert trained == expected  # no user text, no <|output_start|>42<|output_end|>


def test_advantages_are_reward_minus_mean():
    assert advantages([1.0, 0.0, 0.0, 1.0]).tolist() == [0.5, -0.5, -0.5, 0.5]
    assert advantages([1.0, 0.0, 0.0, 0.0]).tolist() == [0.75, -0.25, -0.25, -0.25]
    assert advantages([1.0, 1.0]).tolist() == [0.0, 0.0]


def test_policy_gradient_loss_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.0, -4.0]], requires_grad=True)
    targets = torch.tensor([[5, 5, -1], [-1, 5, 5]])
    adv = torch.tensor([0.5, -0.5])
    loss = policy_gradient_loss(logp, targets, adv)
    # objective = 0.5 * (-1 - 2) + (-0.5) * (-1 - 4) = 1.0 over 4 sampled tokens -> loss -0.25
    assert loss.item() == pytest.approx(-0.25)
    loss.backward()
    assert logp.grad.tolist() == [[-0.125, -0.125, 0.0], [0.0, 0.125, 0.125]]


def test_rollout_batch_trains_only_on_sampled_tokens():
    # prompt 1 2, sampled 3, forced 4, sampled 5; a second, shorter row
    inputs, targets = rollout_batch([[1, 2, 3, 4, 5], [1, 2, 7]], [[0, 0, 1, 0, 1], [0, 0, 1]], pad_id=0)
    assert inputs.tolist() == [[1, 2, 3, 4], [1, 2, 0, 0]]
    assert targets.tolist() == [[-1, 3, -1, 5], [-1, 7, -1, -1]]


def test_pass_at_k():
    outcomes = [[False, True, False], [False, False, False], [True, False, False]]
    assert pass_at_k(outcomes, 1) == pytest.approx(1 / 3)
    assert pass_at_k(outcomes, 2) == pytest.approx(2 / 3)
    assert pass_at_k(outcomes, 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        pass_at_k(outcomes, 4)


def test_stages_refuse_a_missing_input_checkpoint_naming_the_command(tmp_path, monkeypatch):
    from nanochat.scripts import chat_rl, chat_sft, mid_train

    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    for main, phase, command in [(mid_train.main, "base", "nanochat.scripts.base_train"),
                                 (chat_sft.main, "mid", "nanochat.scripts.mid_train"),
                                 (chat_rl.main, "sft", "nanochat.scripts.chat_sft")]:
        with pytest.raises(SystemExit) as e:
            main(["--data", "offline"])
        assert str(e.value) == (f"error: no {phase} checkpoint in {tmp_path}/{phase}_checkpoints; make one first "
                                f"with: python -m {command}")


def test_stages_refuse_missing_task_data_naming_the_download(tmp_path, monkeypatch):
    from nanochat.scripts import mid_train

    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as e:
        mid_train.main([])  # --data full: SmolTalk, MMLU, GSM8K are downloads
    message = str(e.value)
    assert message.startswith("error: ") and "missing data" in message
    assert "python -m nanochat.tasks.download" in message and message.endswith("(or train offline with --data offline)")


def test_offline_problems_are_fixed_per_index_and_scored_like_gsm8k():
    from nanochat.posttrain.offline_tasks import SyntheticChoice, SyntheticGSM8K, synthetic_problem

    assert synthetic_problem("train", 7) == synthetic_problem("train", 7)
    assert synthetic_problem("train", 7) != synthetic_problem("test", 7)
    task = SyntheticGSM8K(size=50)
    for conversation in task:
        parts = conversation["messages"][1]["content"]
        calls = [p["text"] for p in parts if p["type"] == "python"]
        outputs = [p["text"] for p in parts if p["type"] == "python_output"]
        from nanochat.calculator import safe_eval

        assert calls and [safe_eval(c) for c in calls] == outputs  # the calculator agrees with every mark
        answer = "".join(p["text"] for p in parts)
        assert task.evaluate(conversation, answer) and not task.evaluate(conversation, "#### -1")
    choice = SyntheticChoice(size=20)
    for conversation in choice:
        assert choice.evaluate(conversation, conversation["messages"][1]["content"])


@pytest.mark.parametrize("script", ["mid_train", "chat_sft", "chat_rl"])
def test_stages_share_their_flags_and_refuse_a_zero_step_horizon(script, capsys):
    import importlib

    parse_args = importlib.import_module(f"nanochat.scripts.{script}").parse_args
    args = parse_args(["--data", "offline", "--num_iterations", "3", "--eval_every", "7"])
    assert (args.data, args.num_iterations, args.eval_every) == ("offline", 3, 7)
    assert parse_args([]).num_iterations == -1
    with pytest.raises(SystemExit) as e:
        parse_args(["--num_iterations", "0"])
    assert e.value.code == 2
    assert "--num_iterations: expected a positive number of steps or -1, got 0" in capsys.readouterr().err
