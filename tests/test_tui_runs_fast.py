"""The Runs and Chat screens' keys, focus and run bookkeeping with a stand-in for base_train (a small script
with the same flags and files, tests/fixtures/tui/fake_base_train.py): each run its own model tag, every logged
metric in the header, a checkpoint listed in Chat as soon as its run ends, ctrl+t through the run service, esc
out of any field, and typing on the Chat screen going to the message box. The real training is
test_tui_runs_chat.py (slow)."""

import asyncio
import sys
from pathlib import Path

import pytest

from workbench.course.workspace import init_workspace
from workbench.tui.app import WorkbenchApp
from workbench.tui.session import Report

pytestmark = [pytest.mark.timeout(120), pytest.mark.anyio]

FAKE = str(Path(__file__).parent / "fixtures" / "tui" / "fake_base_train.py")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "base"))
    return init_workspace(tmp_path / "ws")


def fake_command(model, steps, tag, gpus):
    return [sys.executable, FAKE, f"--model_tag={tag}", f"--num_iterations={steps}", f"--model={model}"]


def make_app(workspace) -> WorkbenchApp:
    app = WorkbenchApp(workspace.directory, run_checks=False)
    app.runs.command_for = fake_command
    return app


async def until(pilot, condition, timeout=30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def text_of(widget) -> str:
    return "\n".join(strip.text.rstrip() for strip in widget.render_lines(widget.region.reset_offset))


async def test_each_run_gets_its_own_tag_and_the_header_shows_every_metric(workspace):
    app = make_app(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        app.screen.query_one("#run-steps").value = "3"
        tags = []
        for _ in range(2):
            await pilot.press("s")
            await until(pilot, lambda: app.train_run and app.train_run.finished and app.train_run.tag not in tags)
            tags.append(app.train_run.tag)
        assert tags == ["d4", "d4-2"]
        assert app.train_run.state == "finished" and app.train_run.steps == [0, 1, 2]
        header = " ".join(text_of(app.screen.query_one("#run-metrics")).split())
        assert "step 3/3" in header and "loss 7.8000" in header and "val bpb 2.3456" in header
        assert "1,000 tok/s" in header and "1,536 tokens" in header
        assert "saved step 3" in "\n".join(app.screen.query_one("#run-log").lines)
        table = app.screen.query_one("#runs-finished")
        await until(pilot, lambda: table.row_count == 2)  # re-read when the run ended, no key needed


async def test_a_cancelled_run_stops_after_its_step_and_keeps_its_own_folder(workspace, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_SECONDS", "0.05")
    app = make_app(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        app.screen.query_one("#run-steps").value = "3"
        await pilot.press("s")
        await until(pilot, lambda: app.train_run is not None and app.train_run.finished)
        app.screen.query_one("#run-steps").value = "100000"
        await pilot.press("s")
        await until(pilot, lambda: len(app.train_run.steps) >= 2)
        await pilot.press("x")
        assert app.runs.current.interrupts == 1, f"x did not reach the run service (focus: {app.focused})"
        await until(pilot, lambda: app.train_run.finished)
        assert app.train_run.tag == "d4-2" and app.train_run.state.startswith("stopped after step")
        base = Path(workspace.directory).parent / "base" / "base_checkpoints"
        assert sorted(p.name for p in (base / "d4").iterdir()) == ["meta_000003.json", "metrics.jsonl",
                                                                   "model_000003.pt"]


async def test_ctrl_t_in_chat_trains_through_the_service_and_the_checkpoint_is_listed_when_it_ends(workspace):
    app = make_app(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        chat = app.screen
        assert "No checkpoint yet" in text_of(chat.query_one("#chat-empty"))
        shown = {key for key, active in app.active_bindings.items() if active.binding.show}
        assert {"ctrl+t", "ctrl+x", "ctrl+l"} <= shown  # in the footer
        from workbench.tui.screens.modals.help import help_text
        assert "| `^r` | Rescan" in help_text(app)  # re-read by itself on every visit; listed in ?
        # the learner's file passes every check: ctrl+t trains it, not the reference
        app.report = Report({"ok": True, "components": [], "next_todo": None, "error": None}, "", 1.0, 0.0)
        await pilot.press("ctrl+t")
        await until(pilot, lambda: app.train_run is not None and app.train_run.finished, timeout=60)
        assert app.train_run.tag == "d4-learner" and app.train_run.model == str(app.learner_path)
        assert type(app.screen).__name__ == "RunsScreen"
        await pilot.press("5")
        options = [str(value) for _, value in chat.query_one("#chat-checkpoint")._options if value]
        assert "base:d4-learner:50" in options


async def test_esc_leaves_any_field_and_typing_in_chat_goes_to_the_message_box(workspace):
    app = make_app(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        steps = app.screen.query_one("#run-steps")
        steps.focus()
        await pilot.press("1")
        assert type(app.screen).__name__ == "RunsScreen" and steps.value.endswith("1")
        await pilot.press("escape")
        assert not steps.has_focus
        await pilot.press("1")
        assert type(app.screen).__name__ == "CompanionScreen"

        await pilot.press("5")
        chat = app.screen
        box = chat.query_one("#chat-input")
        box.disabled = False  # as once a checkpoint is loaded
        chat.query_one("#chat-checkpoint").focus()
        await pilot.press(*"The function returns")
        assert box.has_focus and box.value == "The function returns"
        assert type(app.screen).__name__ == "ChatScreen"  # h, e, r, ... went into the box, not to shortcuts
        await pilot.press("escape")
        assert not box.has_focus


async def test_the_plot_has_whole_number_steps_and_identical_saves_share_one_labelled_line(workspace):
    from workbench.tui.widgets.loss_plot import Curve
    app = make_app(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        plot = app.screen.query_one("#plot")
        plot.curves = [Curve("this save", [1, 2], [8.3, 8.1]), Curve("1 save ago", [1, 2], [8.3, 8.1]),
                       Curve("2 saves ago", [1, 2], [8.4, 8.2])]
        await until(pilot, lambda: not plot._draw_pending)
        await pilot.pause(0.1)
        shown = text_of(plot)
        assert "this save = 1 save ago" in shown and "2 saves ago" in shown
        assert "1.25" not in shown and "1.50" not in shown  # no fractional step ticks


async def test_side_by_side_puts_code_beside_code(workspace):
    from workbench.course.methods import replace_method
    from workbench.tui.screens.modals.compare import CompareScreen
    mine = ('    def forward(self, x):\n        """My notes: expand, relu squared, project back."""\n'
            '        x = self.c_fc(x)\n        x = F.relu(x).square()\n        return self.c_proj(x)\n')
    source = replace_method(workspace.learner_file.read_text(), "MLP.forward", mine)
    app = make_app(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(CompareScreen("MLP.forward", source))
        await pilot.pause(0.2)
        left = text_of(app.screen.query_one("#side-mine-code")).splitlines()
        right = text_of(app.screen.query_one("#side-reference-code")).splitlines()
        assert left[1].strip() == right[1].strip() == "x = self.c_fc(x)"


async def test_full_pipeline_ticks_when_the_learners_trained_model_answers_and_counts_follow_the_marks(workspace):
    from workbench.tui.messages import ChatEvent
    app = make_app(workspace)
    loaded = []
    app.chat_model.load = lambda phase, tag, step, listener: loaded.append((phase, tag, step))  # no torch here
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        app.screen.query_one("#run-model").value = "learner"
        app.screen.query_one("#run-steps").value = "2"
        await pilot.press("s")
        await until(pilot, lambda: app.train_run and app.train_run.finished)
        await pilot.press("5")
        chat = app.screen
        await until(pilot, lambda: "base:d4-learner:2" in chat.checkpoints)
        app.chat_model.checkpoint = ("base", "d4-learner", 2)
        chat.post_message(ChatEvent("done", data={"tokens": 5, "seconds": 0.1}))
        await until(pilot, lambda: "- [x] **Full pipeline**" in workspace.status_file.read_text(), timeout=10)
        await until(pilot, lambda: "Full pipeline" in "\n".join(
            f"{label}{done}" for label, done in app.checklist.milestones if done), timeout=10)

    # the phase counters count the marks the checklist shows (a live pass before STATUS.md is re-read)
    from workbench.tui.checklist import load_checklist
    from workbench.tui.widgets.checklist import Checklist
    data, _ = load_checklist(workspace.status_file)
    widget = Checklist()
    widget.data = data
    widget.report = Report({"components": [{"qualname": "GPT.__init__", "status": "pass"}], "next_todo": None},
                           None, 0.0, 0.0)
    shown = str(widget.render())
    assert "✔ GPT.__init__" in shown and "Model construction  1/5" in shown


async def test_everything_is_there_at_80x24(workspace):
    app = make_app(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        app.screen.query_one("#run-steps").value = "2"
        await pilot.press("s")
        await until(pilot, lambda: app.train_run and app.train_run.finished)
        await pilot.press("1")
        await until(pilot, lambda: app.checklist is not None)
        await pilot.pause(0.2)
        screen = app.screen
        assert "CausalSelfAttention.__init__" in text_of(screen.query_one("#checklist"))
        assert "learner_gpt.py" in text_of(screen.query_one("#top-bar"))
        app.watch_mode = "watching: native file events"
        await pilot.pause(0.1)
        assert "watching: native file events" in text_of(screen.query_one(".run-state"))
        await pilot.press("4")
        target = app.screen.query_one("#run-target")
        assert target.display and target.region.right <= 80 and target.region.width > 0
        assert app.screen.query_one("#run-cancel").region.right <= 80
        await pilot.press("5")
        picker = app.screen.query_one("#chat-checkpoint")
        await until(pilot, lambda: picker.value == "base:d4:2")
        current = picker.query_one("SelectCurrent")
        assert "base · d4 · 2 · reference" in " ".join(text_of(w) for w in current.query("Static"))


FIXTURES = Path(__file__).parent / "fixtures" / "tui"


async def test_chat_starts_and_stops_the_web_chat_server_for_the_picked_checkpoint(workspace):
    import urllib.request
    app = make_app(workspace)
    app.chat_model.load = lambda *a, **k: None  # no model process: only the web server is under test
    app.web_server.command_for = lambda checkpoint, port: [sys.executable, str(FIXTURES / "fake_chat_web.py"),
                                                           "-i", checkpoint.phase, "--port", str(port)]
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        app.screen.query_one("#run-steps").value = "2"
        await pilot.press("s")
        await until(pilot, lambda: app.train_run and app.train_run.finished)
        await pilot.press("5")
        chat = app.screen
        await until(pilot, lambda: chat.query_one("#chat-checkpoint").value == "base:d4:2")
        await pilot.press("ctrl+w")
        line = chat.query_one("#chat-web")
        await until(pilot, lambda: app.web_server.url is not None and "http://127.0.0.1:" in text_of(line))
        url = app.web_server.url
        assert "base d4 step 2" in text_of(line)
        assert urllib.request.urlopen(url + "health", timeout=5).status == 200
        process = app.web_server.process
        await pilot.press("ctrl+w")
        await until(pilot, lambda: process.returncode is not None and not line.display)


async def test_runs_evaluates_a_checkpoint_shows_its_results_and_the_report_card(workspace, monkeypatch):
    from workbench.tui.screens import runs as runs_screen
    base = Path(workspace.directory).parent / "base"
    results = '{"phase": "base", "model_tag": "d4", "step": 2, "results": {"hellaswag": 0.25}, "CORE": 0.0123, ' \
              '"bpb": {"val": 2.5}}'
    monkeypatch.setattr(runs_screen, "eval_command", lambda c: [
        sys.executable, str(FIXTURES / "fake_job.py"),
        str(base / f"{c.phase}_checkpoints" / c.tag / f"core_eval_{c.step:06d}.json"), results])
    monkeypatch.setattr(runs_screen, "report_command", lambda: [
        sys.executable, str(FIXTURES / "fake_job.py"), str(base / "report" / "report.md"),
        "# nanochat report card\n\n| Metric | BASE |\n|---|---|\n| CORE | 0.0123 |\n"])
    app = make_app(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        app.screen.query_one("#run-steps").value = "2"
        await pilot.press("s")
        await until(pilot, lambda: app.train_run and app.train_run.finished)
        pane = app.screen.query_one("#run-results")
        await until(pilot, lambda: "not evaluated yet" in text_of(pane))
        await pilot.press("E")
        await until(pilot, lambda: "CORE" in text_of(pane), timeout=30)
        shown = text_of(pane)
        assert "0.0123" in shown and "hellaswag" in shown and "val bpb" in shown
        await pilot.press("g")
        await until(pilot, lambda: type(app.screen).__name__ == "ReportCardScreen", timeout=30)
        markdown = app.screen.query_one("Markdown")
        await until(pilot, lambda: markdown.query("MarkdownH1"))
        assert "nanochat report card" in markdown.query_one("MarkdownH1")._content.plain


async def test_the_target_picker_lists_targets_and_a_remote_run_reports_back(workspace, monkeypatch, tmp_path):
    config = tmp_path / "config" / "nanochat-workbench"
    config.mkdir(parents=True)
    (config / "targets.toml").write_text('[targets.nowhere]\nkind = "ssh"\nhost = "127.0.0.1"\nport = 1\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    app = make_app(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        target = app.screen.query_one("#run-target")
        assert [str(v) for _, v in target._options] == ["local", "nowhere"]
        target.value = "nowhere"
        await pilot.press("s")
        await until(pilot, lambda: app.remote_progress is not None and app.remote_progress.finished, timeout=60)
        assert app.remote_progress.state == "failed"
        assert "remote: failed" in text_of(app.screen.query_one("#run-metrics"))
        assert app.remote_progress.line in "\n".join(app.screen.query_one("#run-log").lines)
