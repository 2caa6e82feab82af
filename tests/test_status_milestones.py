"""Milestones with numbers: measured by `nanochat-workbench milestone ...` on the learner's own code (in a child
process), dated in STATUS.md; the first chat recorded through record_milestone."""

import os
import stat
from datetime import datetime
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.course.workspace import init_workspace
from workbench.status.doc import MARK, StatusDoc, milestone_key
from workbench.status.milestones import TARGETS, Measurement, Milestone, record, record_milestone

REFERENCE_GPT = Path(__file__).resolve().parents[1] / "nanochat" / "gpt.py"
RUSTBPE_TRAINER = '''
import rustbpe

def train_bpe(text, vocab_size, pattern):
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter([text]), vocab_size, pattern=pattern)
    return [token for token, _ in sorted(tok.get_mergeable_ranks(), key=lambda item: item[1])][256:]
'''


@pytest.fixture
def workspace(tmp_path):
    return init_workspace(tmp_path / "ws")


def _line(path, milestone: Milestone) -> str | None:
    doc = StatusDoc.load(path)
    found = next((m for m in doc.milestones if m.key == milestone_key(TARGETS[milestone].label)), None)
    return doc.text.splitlines()[found.line] if found else None


def _milestone(capsys, *args) -> tuple[int, str, str]:
    rc = main(["milestone", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


# -- recording ------------------------------------------------------------------------------------------------


def test_first_chat_is_dated_in_the_milestones_section_and_keeps_its_first_date(workspace):
    before = workspace.status_file.read_text(encoding="utf-8")
    assert record_milestone(workspace.directory, Milestone.FIRST_CHAT, "base · d4 · step 50 (learner_gpt.py)",
                            when=datetime(2026, 3, 2, 21, 15)) is None
    line = _line(workspace.status_file, Milestone.FIRST_CHAT)
    assert line == (f"- [x] **First chat** — a model of your own answered you · reached 2026-03-02 21:15: "
                    f"base · d4 · step 50 (learner_gpt.py) {MARK}")
    after = workspace.status_file.read_text(encoding="utf-8")
    assert after.replace(line + "\n", "", 1) == before, "one line added, nothing else changed"
    text = after.split("## Milestones", 1)[1].split("\n## ", 1)[0]
    assert text.rstrip().endswith(line), "it goes at the end of the milestones list"
    # a later chat does not move the date of the first
    record_milestone(workspace.directory, Milestone.FIRST_CHAT, "sft · d4", when=datetime(2026, 3, 9, 9, 0))
    assert _line(workspace.status_file, Milestone.FIRST_CHAT) == line


def test_a_measurement_short_of_its_target_is_dated_then_replaced_when_reached_and_reached_stays(workspace):
    status = workspace.status_file
    record(status, Measurement(Milestone.OVERFIT, False, "loss 0.43 after 300 steps", datetime(2026, 1, 1, 8, 0)))
    assert _line(status, Milestone.OVERFIT) == (
        "- [ ] **Overfits a fixed set of sentences** — loss < 0.1 on the CPU · "
        "not yet (2026-01-01 08:00): loss 0.43 after 300 steps")
    record(status, Measurement(Milestone.OVERFIT, True, "loss 0.08 after 212 steps", datetime(2026, 1, 2, 8, 0)))
    reached = _line(status, Milestone.OVERFIT)
    assert reached.startswith("- [x] ") and "reached 2026-01-02 08:00: loss 0.08 after 212 steps" in reached
    record(status, Measurement(Milestone.OVERFIT, False, "loss 2.1 (a new bug)", datetime(2026, 1, 3, 8, 0)))
    assert _line(status, Milestone.OVERFIT) == reached
    assert sum("Overfits a fixed set" in line for line in status.read_text().splitlines()) == 1


def test_a_box_ticked_by_hand_is_not_unticked_and_a_missing_section_is_created(tmp_path, workspace):
    text = workspace.status_file.read_text(encoding="utf-8")
    workspace.status_file.write_text(text.replace(
        "## Milestones\n", "## Milestones\n\n- [x] **Tokenizer compresses** — did it on paper\n"), encoding="utf-8")
    record(workspace.directory, Measurement(Milestone.TOKENIZER, False, "3.1 characters per token"))
    assert _line(workspace.status_file, Milestone.TOKENIZER) == "- [x] **Tokenizer compresses** — did it on paper"

    bare = tmp_path / "STATUS.md"
    bare.write_text("# notes\n\nmine\n", encoding="utf-8")
    record(bare, Measurement(Milestone.OPTIMIZER, True, "gap 0.0000", datetime(2026, 1, 1, 8, 0)))
    assert bare.read_text(encoding="utf-8").startswith("# notes\n\nmine\n\n## Milestones\n\n- [x] **Optimizer matches")


def test_a_read_only_status_md_is_left_alone_with_one_line(workspace):
    os.chmod(workspace.status_file, stat.S_IRUSR)
    message = record_milestone(workspace.directory, Milestone.FIRST_CHAT, "base")
    assert "read-only" in message and "\n" not in message


# -- nanochat-workbench milestone overfit ------------------------------------------------------------------------


def test_overfit_on_the_skeleton_names_the_todo_in_one_line_and_writes_nothing(workspace, capsys):
    before = workspace.status_file.read_text(encoding="utf-8")
    rc, out, err = _milestone(capsys, "overfit", "--model", workspace.learner_file, "--sentences", 4,
                              "--max-steps", 2, "--depth", 1)
    assert rc == 1
    assert "error: learner_gpt.py:" in err and "GPT.__init__ is still a TODO" in err
    assert "Traceback" not in out + err and "workbench bug" not in out + err
    assert workspace.status_file.read_text(encoding="utf-8") == before


def test_overfit_reports_a_crash_in_the_learners_forward_as_theirs(workspace, capsys):
    source = REFERENCE_GPT.read_text(encoding="utf-8").replace(
        "        B, T = idx.size()\n", "        B, T = idx.size()\n        raise ZeroDivisionError('oops')\n", 1)
    assert "oops" in source
    workspace.learner_file.write_text(source, encoding="utf-8")
    rc, out, err = _milestone(capsys, "overfit", "--model", workspace.learner_file, "--sentences", 4,
                              "--max-steps", 2, "--depth", 1)
    assert rc == 1
    error = next(line for line in err.splitlines() if line.startswith("error: "))
    assert "learner_gpt.py:" in error and "GPT.forward" in error and "ZeroDivisionError" in error and "oops" in error
    assert "Traceback" not in out + err and "workbench bug" not in out + err


@pytest.mark.slow
def test_a_copy_of_the_reference_overfits_and_the_milestone_is_dated(workspace, capsys):
    workspace.learner_file.write_text(REFERENCE_GPT.read_text(encoding="utf-8"), encoding="utf-8")
    rc, out, _ = _milestone(capsys, "overfit", "--model", workspace.learner_file, "--sentences", 4,
                            "--max-steps", 80, "--depth", 1)
    assert rc == 0, out
    assert "  step    1  loss" in out, "progress is printed"
    line = _line(workspace.status_file, Milestone.OVERFIT)
    assert line.startswith("- [x] **Overfits a fixed set of sentences**") and "4 sentences" in line
    final = float(line.split(": loss ", 1)[1].split()[0])
    assert final < 0.1


# -- nanochat-workbench milestone tokenizer ----------------------------------------------------------------------


def test_tokenizer_at_the_defaults_a_correct_bpe_reaches_four_characters_per_token(workspace, write, capsys):
    trainer = write("my_bpe.py", RUSTBPE_TRAINER)
    rc, out, err = _milestone(capsys, "tokenizer", trainer, "--status", workspace.status_file)
    assert rc == 0, out + err
    line = _line(workspace.status_file, Milestone.TOKENIZER)
    assert line.startswith("- [x] **Tokenizer compresses**") and "vocab 16,384" in line
    assert float(line.split(": ", 1)[1].split()[0]) >= 4.0


def test_tokenizer_short_of_the_target_says_the_measured_ratio(workspace, write, capsys):
    import rustbpe
    import tiktoken

    from nanochat import embedded_corpus
    from nanochat.tokenizer import SPLIT_PATTERN
    trainer = write("my_bpe.py", RUSTBPE_TRAINER)
    rc, out, _ = _milestone(capsys, "tokenizer", trainer, "--vocab-size", 600, "--chars", 50_000,
                            "--status", workspace.status_file)
    assert rc == 1 and "✘ not yet: " in out
    # the same figure computed here, independently, from rustbpe's own ranks
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter(["\n\n".join(embedded_corpus.split("train"))[:50_000]]), 600, pattern=SPLIT_PATTERN)
    enc = tiktoken.Encoding("x", pat_str=SPLIT_PATTERN, mergeable_ranks=dict(tok.get_mergeable_ranks()),
                            special_tokens={})
    held_out = "\n\n".join(embedded_corpus.split("val"))
    assert f"{len(held_out) / len(enc.encode_ordinary(held_out)):.2f} characters per token" in out
    assert _line(workspace.status_file, Milestone.TOKENIZER).startswith("- [ ] **Tokenizer compresses**")


def test_tokenizer_errors_and_usage(workspace, write, capsys, tmp_path):
    broken = write("my_bpe.py", "def train_bpe(text, vocab_size, pattern):\n    return {}['missing']\n")
    rc, _, err = _milestone(capsys, "tokenizer", broken, "--chars", 1000, "--vocab-size", 300, "--no-status")
    assert rc == 1 and "train_bpe raised KeyError" in err and "my_bpe.py:2" in err
    rc, _, err = _milestone(capsys, "tokenizer", tmp_path / "nope.py")
    assert rc == 2 and "does not exist" in err
    rc, _, err = _milestone(capsys, "tokenizer", broken, "--vocab-size", 100)
    assert rc == 2 and "at least 257" in err
    rc, _, err = _milestone(capsys)
    assert rc == 2


# -- nanochat-workbench milestone optimizer ----------------------------------------------------------------------

REFERENCE_MUON = Path(__file__).resolve().parents[1] / "nanochat" / "muon.py"
ORTHOGONALISE = 'update = orthogonalise(stacked, steps=group["ns_steps"], dtype=ns_dtype)'


@pytest.mark.slow
def test_optimizer_a_copy_of_muon_follows_the_reference_curve(workspace, capsys):
    mine = workspace.directory / "learner_muon.py"
    mine.write_text(REFERENCE_MUON.read_text(encoding="utf-8"), encoding="utf-8")
    rc, out, err = _milestone(capsys, "optimizer", mine, "--steps", 4, "--depth", 1, "--seq", 64)
    assert rc == 0, out + err
    assert "reference step   1  loss" in out and "yours     step   4  loss" in out
    line = _line(workspace.status_file, Milestone.OPTIMIZER)
    assert line.startswith("- [x] **Optimizer matches the reference**") and "your Muon: largest loss gap 0.0000" in line


def test_optimizer_without_the_orthogonalisation_is_not_yet_and_a_file_with_no_optimizer_says_so(workspace, capsys):
    source = REFERENCE_MUON.read_text(encoding="utf-8")
    assert ORTHOGONALISE in source
    mine = workspace.directory / "learner_muon.py"
    mine.write_text(source.replace(ORTHOGONALISE, "update = stacked"), encoding="utf-8")
    rc, out, err = _milestone(capsys, "optimizer", mine, "--steps", 4, "--depth", 1, "--seq", 64)
    assert rc == 1 and "✘ not yet: your Muon: largest loss gap" in out, out + err
    gap = float(out.split("largest loss gap ", 1)[1].split()[0])
    assert gap > 0.02
    assert _line(workspace.status_file, Milestone.OPTIMIZER).startswith("- [ ] **Optimizer matches the reference**")

    mine.write_text("def helper():\n    return 1\n", encoding="utf-8")
    rc, out, err = _milestone(capsys, "optimizer", mine, "--steps", 4, "--depth", 1, "--seq", 64, "--no-status")
    assert rc == 1 and "does not define Muon" in err and "Traceback" not in out + err


# -- a file of another track, or given as FILE -------------------------------------------------------------------


def test_a_file_of_another_track_is_a_usage_error_naming_the_file_the_milestone_needs(tmp_path, capsys):
    ws = init_workspace(tmp_path / "ws", track="all")
    before = ws.status_file.read_text(encoding="utf-8")
    rc, _, err = _milestone(capsys, "optimizer", ws.directory / "learner_dataloader.py")
    assert rc == 2 and err.strip().splitlines() == [
        "nanochat-workbench milestone: error: learner_dataloader.py is a file of the data track; the optimizer "
        "milestone needs your learner_muon.py or learner_adamw.py"]
    rc, _, err = _milestone(capsys, "optimizer", ws.learner_file)
    assert rc == 2 and "learner_gpt.py is your GPT file; the optimizer milestone needs" in err
    rc, _, err = _milestone(capsys, "overfit", ws.directory / "learner_training.py")
    assert rc == 2 and "learner_training.py is a file of the training track; the overfit milestone trains" in err
    rc, _, err = _milestone(capsys, "overfit", ws.learner_file, "--model", ws.learner_file)
    assert rc == 2 and "give your GPT file once" in err
    assert ws.status_file.read_text(encoding="utf-8") == before


def test_optimizer_on_the_skeleton_names_its_todo_without_base_trains_flag(tmp_path, capsys):
    ws = init_workspace(tmp_path / "ws", track="optimizer")
    rc, _, err = _milestone(capsys, "optimizer", ws.directory / "learner_muon.py")
    assert rc == 1
    assert err.startswith("error: learner_muon.py:")
    assert "zeropower_via_newtonschulz5 is still a TODO (TODO: normalise" in err
    assert "--optimizer" not in err and "Traceback" not in err


def test_overfit_takes_the_gpt_file_as_its_argument(workspace, capsys):
    rc, _, err = _milestone(capsys, "overfit", workspace.learner_file, "--sentences", 4, "--max-steps", 2,
                            "--depth", 1)
    assert rc == 1 and "GPT.__init__ is still a TODO" in err
