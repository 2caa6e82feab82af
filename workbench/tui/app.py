"""The nanochat-workbench TUI: one Textual app over the learner's workspace.

The app owns the state and the slow work; screens only display it. Workers report up with messages
(workbench/tui/messages.py), the app turns them into reactive state (`report`, `checklist`, `checking`, `watch_mode`),
and each screen watches the state it shows. `report` is the GPT file's latest report (Plot, Chat and the attention
maps read it); the companion shows `shown_report`, the report of the learner file saved last or picked with `T`
(workbench/tui/tracks.py lists the files). Slow things are named, exclusive workers:

- "watch": watchfiles on the workspace directory (after a start-up probe proving events arrive, else polling)
- "check": the core runner on the learner's GPT file; a newer save cancels the check in flight
- "track-check:<file>": the track runner (workbench/tracks/runner.py) on one track file (learner_muon.py, ...), the
  same way; one group per file, so a save of one track file never cancels another's check
- "status-write" and "notes-write": thread workers writing STATUS.md through workbench.status.doc

Child processes belong to the services in workbench/tui/services/ (the app holds one of each; they run in the
app's exclusive workers and report with messages that the app turns into state): `runs` (RunService: local
training, "train-run"), `chat_model` (ChatModel: the chat worker, "chat-model"), `jobs` (JobService: evals and the
report card, "job-eval"/"job-report"), `web_server` (WebChatService: chat_web, "web-chat"), `remote_runs`
(RemoteRunService: a run on a targets.toml target, "remote-run").

torch is never imported here: the runner's worker process, training runs and the chat worker import it.
"""

import asyncio
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import var
from textual.worker import Worker, WorkerState

from nanochat.fsutil import atomic_write
from workbench.check.result import Status
from workbench.course.phases import ALL_METHODS
from workbench.course.workspace import STATUS_NAME, learner_file_in, read_learner_file
from workbench.status.rules import tick_passed
from workbench.tui.checklist import load_checklist
from workbench.tui.messages import (CheckCrashed, CheckFinished, CheckStarted, FilesChanged, JobExited, JobOutput,
                                    RemoteProgress, RunExited, RunOutput, WarmupProgress, WatcherReady,
                                    WebChatChanged)
from workbench.tui.screens.companion import CompanionScreen
from workbench.tui.screens.modals.confirm import ConfirmScreen
from workbench.tui.screens.modals.init_workspace import InitWorkspaceScreen
from workbench.tui.services.chat_model import ChatModel
from workbench.tui.services.jobs import Job, JobService
from workbench.tui.services.remote_runs import RemoteRunService
from workbench.tui.services.training import Run, RunService
from workbench.tui.services.web_chat import WebChatService
from workbench.tui.session import Report, Session
from workbench.tui.tracks import LearnerFile, following, learner_files, newest, present
from workbench.tui.watcher import WorkspaceWatcher
from workbench.tui.widgets.next_step import shown_problem

NOTES_DEBOUNCE_S = 0.5
CHECK_GROUP, TRACK_CHECK_GROUP = "check", "track-check"  # the track file's name follows: "track-check:learner_muon.py"
POLL_PROBE_S = 2.0


def is_check_group(group: str) -> bool:
    """A worker that checks a learner file (the GPT file's, or one track file's)."""
    return group == CHECK_GROUP or group.startswith(TRACK_CHECK_GROUP + ":")


class WorkbenchApp(App):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses (tests, benchmarks) find it too
    TITLE = "nanochat-workbench"
    MODES = {  # the companion is built at start; the others (and their imports) when first opened
        "companion": CompanionScreen,
        "lessons": lambda: _screen("lessons", "LessonsScreen"),
        "plot": lambda: _screen("plot", "PlotScreen"),
        "runs": lambda: _screen("runs", "RunsScreen"),
        "chat": lambda: _screen("chat", "ChatScreen"),
    }
    DEFAULT_MODE = "companion"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # screen classes for 80-column terminals
    # Every key works on every screen; the footer shows a few (the companion adds its own), `?` and the command
    # palette list them all. `description` is the footer's word, `tooltip` what `?` and the palette say.
    BINDINGS = [
        Binding("1", "switch_mode('companion')", "Companion", show=False, tooltip="Live feedback on your file"),
        Binding("2", "switch_mode('lessons')", "Lessons", show=False, tooltip="Read the lessons and take notes"),
        Binding("3", "switch_mode('plot')", "Plot", show=False,
                tooltip="The loss of this save and the saves before, compare runs and experiments"),
        Binding("4", "switch_mode('runs')", "Runs", show=False,
                tooltip="Train a tiny model here or on a target; checkpoints, evals, the report card"),
        Binding("5", "switch_mode('chat')", "Chat", show=False, tooltip="Talk to a checkpoint"),
        Binding("l", "open_lesson", "Lesson", show=False, tooltip="The lesson for the function you are on"),
        Binding("h", "hint", "Hint", show=False,
                tooltip="The hint ladder for the method you are on: shapes, formula, outline, the reference's code"),
        Binding("v", "compare", "Side by side", show=False,
                tooltip="Your method beside the reference's, full screen"),
        Binding("a", "attention", "Attention", show=False,
                tooltip="Where each attention head of your model looks (↑↓ layer, ←→ head)"),
        Binding("e", "edit", "Edit", show=False, tooltip="Open the file shown in $EDITOR"),
        Binding("r", "rerun", "Re-run", show=False,
                tooltip="Check the file shown now (when file events do not arrive)"),
        Binding("T", "next_file", "Track", show=False,
                tooltip="Show the workspace's next learner file in the companion (the GPT, then each track's)"),
        Binding("m", "open_reference_lesson('math')", "Math primer", show=False,
                tooltip="The math primer lesson: dot products, softmax, shapes, gradients, cross-entropy"),
        Binding("question_mark", "help", "Help", key_display="?", tooltip="Every key and what each screen does"),
        Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="Quit (notes are saved first)"),
    ]

    report: var[Report | None] = var(None, always_update=True)  # the GPT file's latest report
    shown_file: var[str] = var("")  # the learner file the companion shows: the one saved last, or picked with T
    shown_report: var[Report | None] = var(None, always_update=True)  # that file's latest report
    checklist = var(None, always_update=True)
    checking: var[bool] = var(False)
    watch_mode: var[str] = var("starting the file watcher…")
    last_finished: var[float | None] = var(None)
    last_seconds: var[float | None] = var(None)
    summary: var[str] = var("")
    check_detail: var[str] = var("")
    check_child: var[str] = var("")  # the checker's child strategy, "fork" or "spawn" (workbench/check/spare.py)
    passed_method: var[tuple[str, str] | None] = var(None)  # (qualname, file text) of the latest newly passing method
    warmup: var[dict | None] = var(None)  # while the checker prepares (first run: corpus, tokenizer): its progress
    lesson_request: var[tuple[str | None, str | None] | None] = var(None, always_update=True)
    train_run: var[Run | None] = var(None, always_update=True)  # the training run (RunService's), as it goes
    checkpoints_version: var[int] = var(0)  # bumped when a run ends: screens listing checkpoints re-read them
    job: var[Job | None] = var(None, always_update=True)  # the eval / report job that last reported
    web_chat: var[WebChatChanged | None] = var(None)  # the web chat server's latest state
    remote_progress: var[RemoteProgress | None] = var(None, always_update=True)

    def __init__(self, workspace: Path, *, learner_file: Path | None = None, probe_timeout: float = 1.0,
                 run_checks: bool = True, runner=None):
        """`run_checks=False` opens the workspace without running the learner's code (lessons, notes, runs only).
        `runner`: a workbench.check.client.Runner to share (it is then left running on exit); by default the app starts
        its own."""
        super().__init__()
        self.run_checks = run_checks
        self._owns_runner = runner is None
        self.workspace = Path(workspace).resolve()
        self.learner_path = learner_file or learner_file_in(self.workspace)
        self.status_path = self.workspace / STATUS_NAME
        self.probe_timeout = probe_timeout
        self.session: Session | None = None
        self.runner = runner
        if runner is not None:  # a shared runner reports its warm-up to the app using it now
            runner.on_progress = self._warmup_changed
        self._saved_at: float | None = None  # when the save that started the current check was seen
        self._shown_errors: set[str] = set()  # workbench problems already reported (not repeated every save)
        self.hint_levels: dict[str, int] = {}  # rungs of the hint ladder revealed, per method (HintScreen.key)
        self.last_passed: str | None = None  # the method that most recently started passing (for v)
        self._undo: list[tuple[Path, str, str, str]] = []  # (file, qualname, its text before the reset, file after)
        self._notes_pending: dict = {}  # lesson name -> the last NoteEdited for it, not yet written
        self._notes_timer = None
        self.sub_title = str(self.learner_path.name)
        self.learner_files = learner_files(self.learner_path.name)  # the GPT file and every track's files
        self.reports: dict[str, Report] = {}  # file name -> its latest report
        self.set_reactive(WorkbenchApp.shown_file, self.learner_path.name)
        self.runs = RunService(self)  # the services own the child processes; screens only display them
        self.chat_model = ChatModel(self)
        self.jobs = JobService(self)
        self.web_server = WebChatService(self)
        self.remote_runs = RemoteRunService(self)

    # ---- start-up -------------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.learner_path.exists() or self.has_track_files():  # `init --track optimizer` alone makes no GPT file
            self.start_workspace()
        elif self.status_path.exists():
            self.reload_status()
            self.notify(f"{self.status_path} is here but {self.learner_path.name} is not: put your learner file "
                        f"back, or run `nanochat-workbench init DIR` elsewhere for a fresh start. Lessons still work.",
                        title="No learner file", severity="error", timeout=20)
        else:
            self.push_screen(InitWorkspaceScreen(str(self.workspace), self.learner_path.name), self._init_answered)

    def _init_answered(self, create: bool | None) -> None:
        if not create:
            self.exit(return_code=1, message="No workspace created; run `nanochat-workbench init` when ready.")
            return
        from workbench.course.workspace import WorkspaceError, init_workspace
        try:
            ws = init_workspace(self.workspace, self.learner_path.name)
        except WorkspaceError as e:
            self.notify(str(e), title="Workspace not created", severity="error", timeout=20)
            return
        self.learner_path = ws.learner_file
        self.notify(f"Created {ws.learner_file.name} and STATUS.md in {ws.directory}. Start with GPT.__init__: "
                    f"press e to edit, l for its lesson.", title="Workspace ready")
        self.start_workspace()

    def start_workspace(self) -> None:
        if self.run_checks:
            if self.learner_path.exists():
                self._get_runner()  # the worker warms up while the screen paints
            if self.has_track_files():
                from workbench.tracks.runner import prestart
                prestart()  # a track child imports torch now, before the first track file's save
        self.session = Session.load(self.workspace)
        self.reload_status()
        self.watch_workspace(force_polling=None)
        if self.learner_path.exists():  # a workspace of track files only checks its GPT file once one is saved
            self.run_check("start")
        last = newest(self.workspace, self.learner_files)
        if not last.is_model:  # the companion opens on the file saved last
            self.show_file(last.name)

    def has_track_files(self) -> bool:
        """Does the workspace hold any track file (learner_muon.py, ...)?"""
        return any(not f.is_model and (self.workspace / f.name).is_file() for f in self.learner_files)

    async def on_unmount(self) -> None:
        self.flush_notes()
        if self.runner is not None and self._owns_runner:
            self.runner.close()
        from workbench.tracks.runner import close_spares
        close_spares()  # the waiting track child, if any
        # the services' processes end here: quitting cancels workers without waiting for their clean-up
        await self.runs.stop()
        await self.chat_model.close()
        await self.web_server.stop()

    def bind_run_state(self, widget) -> None:
        """Keep a screen's status bar in step with the app's run state."""
        def follow(name):
            def copy(value):
                setattr(widget, name, value)
            return copy
        for name in ("checking", "watch_mode", "last_finished", "last_seconds", "summary", "check_detail",
                     "check_child"):
            widget.watch(self, name, follow(name))

    # ---- watching ---------------------------------------------------------------------------------------------

    @work(exclusive=True, group="watch", exit_on_error=False)
    async def watch_workspace(self, force_polling: bool | None) -> None:
        names = {f.name for f in self.learner_files} | {STATUS_NAME}
        watcher = WorkspaceWatcher(self.workspace, names, force_polling=force_polling)
        probe = asyncio.create_task(self._probe(watcher, force_polling))
        try:
            async for names in watcher.changes():
                self.post_message(FilesChanged(names))
        finally:
            probe.cancel()
            watcher.stop()

    async def _probe(self, watcher: WorkspaceWatcher, force_polling: bool | None) -> None:
        # polling gets a fixed, longer allowance: its events come at the next poll, not at once
        proved = await watcher.probe(self.probe_timeout if not watcher.polling else POLL_PROBE_S)
        if proved is None:
            self.post_message(WatcherReady(watcher.polling, "watching (unverified: cannot write in the folder)"))
        elif proved:
            self.post_message(WatcherReady(watcher.polling, "watching: polling every 0.1 s" if watcher.polling
                                           else "watching: native file events"))
        elif not watcher.polling:
            self.post_message(WatcherReady(True, "watching: polling (no file events arrived within 1 s)",
                                           fell_back=True))
            self.watch_workspace(force_polling=True)
        else:
            self.post_message(WatcherReady(True, "watching failed: press r to re-run by hand"))

    def on_watcher_ready(self, message: WatcherReady) -> None:
        self.watch_mode = message.detail
        if message.fell_back:
            self.notify("File events do not arrive in this directory (WSL /mnt, network drive?): polling instead.",
                        title="Watching by polling", severity="warning")

    def on_files_changed(self, message: FilesChanged) -> None:
        if STATUS_NAME in message.names:
            self.reload_status()
        saved = [f for f in self.learner_files  # a GPT file that went is checked (and says so); a track file is not
                 if f.name in message.names and (f.is_model or (self.workspace / f.name).is_file())]
        for file in saved:
            if file.is_model:
                self._saved_at = time.perf_counter()
                self.run_check("save")
            else:
                self.run_track_check(file.name, time.perf_counter())
        if saved:  # the companion follows the file saved last
            self.show_file(saved[-1].name, check=False)

    # ---- checking ---------------------------------------------------------------------------------------------

    def _get_runner(self):
        """The core runner: a warm worker process (torch and the reference loaded once), started on first use."""
        if self.runner is None:
            from workbench.check.client import Runner
            self.runner = Runner(on_progress=self._warmup_changed)
        return self.runner

    def _warmup_changed(self, progress: dict | None) -> None:
        """The runner's warm-up stages (called from its reader thread): shown by the next-step panel's bar."""
        self.post_message(WarmupProgress(progress))

    def on_warmup_progress(self, message: WarmupProgress) -> None:
        self.warmup = message.progress

    @work(exclusive=True, group=CHECK_GROUP, exit_on_error=False)
    async def run_check(self, reason: str) -> None:
        if not self.run_checks:
            return
        started = self._saved_at if reason == "save" and self._saved_at else time.perf_counter()
        self.post_message(CheckStarted(reason, self.learner_path.name))
        if not self.learner_path.exists():
            self.post_message(CheckCrashed(f"{self.learner_path} does not exist: create it with "
                                           f"`nanochat-workbench init {self.workspace}`"))
            return
        try:  # never blocks: a FIFO or device in the learner file's place is refused, not waited on
            source = read_learner_file(self.learner_path, errors="replace")
        except OSError as e:
            self.post_message(CheckCrashed(f"cannot read {self.learner_path}: {e.strerror or e}"))
            return
        from workbench.check.client import CheckCancelled, RunnerError
        runner = self._get_runner()
        if not runner.warm:
            self.check_detail = "warming up the checker (loads torch and the reference once)"
            self.warmup = runner.warmup_progress
        self.check_child = runner.info.get("child", "")  # known once the worker is warm
        try:
            result = await runner.run(self.learner_path)
        except CheckCancelled:
            return  # a newer save took over
        except RunnerError as e:
            self.post_message(CheckCrashed(f"The checker could not run: {e}\nThis is the workbench failing, not "
                                           f"your code. Press r to try again."))
            return
        finally:
            self.check_detail = ""
        self.post_message(CheckFinished(result, source, time.perf_counter() - started, self.learner_path.name))

    def run_track_check(self, name: str, started: float) -> None:
        """Check a track file (learner_muon.py, ...) in the track runner's child process, in an exclusive worker of
        its own: a newer save of the same file cancels its check in flight; other files' checks run on."""
        self.run_worker(self.track_check(name, started), name=f"track-check {name}",
                        group=f"{TRACK_CHECK_GROUP}:{name}", exclusive=True, exit_on_error=False)

    async def track_check(self, name: str, started: float) -> None:
        if not self.run_checks:
            return
        path = self.workspace / name
        self.post_message(CheckStarted("save", name))
        try:  # never blocks: a FIFO or device in the file's place is refused, not waited on
            source = read_learner_file(path, errors="replace")
        except OSError as e:
            self.post_message(CheckCrashed(f"cannot read {path}: {e.strerror or e}"))
            return
        from workbench.tracks.runner import NotATrackFile, run_track_check
        try:
            result = await run_track_check(path)
        except NotATrackFile as e:  # e.g. a GPT saved under a track file's name
            self.post_message(CheckCrashed(f"{e}, but {name} is the name of a file of the track "
                                           f"'{self.file_named(name).title}': save that track's code there."))
            return
        self.post_message(CheckFinished(result, source, time.perf_counter() - started, name))

    def on_check_started(self, message: CheckStarted) -> None:
        self.checking = True

    def on_check_finished(self, message: CheckFinished) -> None:
        if message.name == self.learner_path.name:
            self._announce_new_passes(message.result, message.source)
            regressions = self.session.record(message.result, message.source)
            self.report = Report(message.result, message.source, message.seconds, time.time(), regressions)
            self.write_ticks(message.result)
            self.save_session(self.session.state())
        else:
            self.reports[message.name] = Report(message.result, message.source, message.seconds, time.time())
            self.write_ticks(message.result)  # the track's phase in STATUS.md (workbench/status/rules.py)
            self.shown_report = self.reports.get(self.shown_file)  # the checklist marks every file's statuses
        report = self.reports[message.name]
        self.last_finished, self.last_seconds = report.finished_at, message.seconds
        if message.name == self.shown_file:
            self.summary = _summary(message.result, report.regressions)

    def watch_report(self, report: Report | None) -> None:
        """The GPT file's report is one of the learner files' reports; the companion shows it when it is shown."""
        if report is not None:
            self.reports[self.learner_path.name] = report
        self.shown_report = self.reports.get(self.shown_file)

    # ---- the learner files (workbench/tui/tracks.py) ----------------------------------------------------------

    def file_named(self, name: str) -> LearnerFile:
        """One of the workspace's learner files by name (the GPT file for a name that is none of them)."""
        return next((f for f in self.learner_files if f.name == name), self.learner_files[0])

    @property
    def shown(self) -> LearnerFile:
        """The learner file the companion shows."""
        return self.file_named(self.shown_file)

    @property
    def shown_path(self) -> Path:
        return self.workspace / self.shown_file

    def show_file(self, name: str, check: bool = True) -> None:
        """Show one learner file's report in the companion (with `check`, checking it first when it has none)."""
        self.shown_file = name
        self.shown_report = report = self.reports.get(name)
        self.summary = _summary(report.result, report.regressions) if report else ""
        if check and report is None and not self.shown.is_model:
            self.run_track_check(name, time.perf_counter())

    def action_next_file(self) -> None:
        """T: the companion shows the next learner file of the workspace (GPT, then each track's)."""
        files = present(self.workspace, self.learner_files)
        if len(files) < 2:
            self.notify("learner_gpt.py is this workspace's only learner file. `nanochat-workbench init . --track "
                        "optimizer` (or data, training, engine, all) adds a track's files.", title="Tracks")
            return
        file = following(files, self.shown_file)
        self.show_file(file.name)
        self.switch_mode("companion")
        self.notify(f"{file.name}: {file.title}", title="Showing")

    @work(thread=True, exclusive=True, group="session-save", exit_on_error=False)
    def save_session(self, state: str) -> None:
        """Write the session's history off the UI thread (an fsync can take a while on a slow disk)."""
        error = self.session.save(state)
        if error:
            self.call_from_thread(self.notify_once, error + " — check the folder's permissions.",
                                  title="History not saved")

    def _announce_new_passes(self, result: dict, source: str | None) -> None:
        """A method that starts passing is announced and shown beside the reference's version of it."""
        if self.report is None:
            return
        now = {c.get("qualname") for c in result.get("components") or [] if c.get("status") == Status.PASS}
        new = [q for q in ALL_METHODS if q in now and self.report.status_of(q) != Status.PASS]
        if new:
            self.last_passed = new[-1]
            if source is not None:
                self.passed_method = (new[-1], source)
            self.notify(f"{', '.join(new)} now match{'es' if len(new) == 1 else ''} the reference: see "
                        f"{new[-1]} beside the reference's version (v for full screen).", title="Passing ✔")

    def notify_once(self, message: str, title: str, severity: str = "warning") -> None:
        """A notification for a problem of the workbench's own, shown once rather than after every save."""
        if message not in self._shown_errors:
            self._shown_errors.add(message)
            self.notify(message, title=title, severity=severity, timeout=12)

    def on_check_crashed(self, message: CheckCrashed) -> None:
        self.notify(message.message, title="Check not run", severity="error", timeout=10)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.worker_state_changed(event)

    def worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker failures become UI (screens forward theirs here, see screens/base.py)."""
        worker = event.worker
        if is_check_group(worker.group):
            self.checking = any(is_check_group(w.group) and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
                                for w in self.workers)
        if event.state == WorkerState.ERROR:
            self.notify(f"{worker.error!r}\nThis is a bug in the workbench, not in your code. "
                        f"Press r to try again.", title=f"{worker.name} failed", severity="error", timeout=15)

    # ---- training runs (workbench/tui/services/training.py) ----------------------------------------------------

    def on_run_output(self, message: RunOutput) -> None:
        run = self.runs.take(message)
        if run is not None:
            self.train_run = run

    def on_run_exited(self, message: RunExited) -> None:
        run = self.runs.take(message)
        if run is None:
            return
        self.train_run = run
        self.checkpoints_version += 1
        if run.returncode != 0 and not run.interrupts:
            self.notify(f"The training run {run.tag} failed: its last lines are in the Runs screen's log (4).",
                        severity="error")

    def on_job_output(self, message: JobOutput) -> None:
        self.job = self.jobs.take(message)

    def on_job_exited(self, message: JobExited) -> None:
        self.job = self.jobs.take(message)

    def on_web_chat_changed(self, message: WebChatChanged) -> None:
        self.web_chat = message
        if message.error:
            self.notify(f"The web chat server stopped: {message.error}", title="Web chat", severity="error")

    def on_remote_progress(self, message: RemoteProgress) -> None:
        self.remote_progress = message
        if message.finished:
            self.checkpoints_version += 1

    # ---- STATUS.md --------------------------------------------------------------------------------------------

    def reload_status(self) -> None:
        data, error = load_checklist(self.status_path)
        self.checklist = data
        if error:
            self.notify(error, title="STATUS.md", severity="warning", timeout=10)

    @work(thread=True, group="status-write", exit_on_error=False)
    def write_ticks(self, result: dict) -> None:
        """Tick STATUS.md in a thread (save() fsyncs); the watcher then reloads the checklist."""
        error = tick_passed(self.status_path, result)
        if error:
            self.call_from_thread(self.notify_once, error, title="STATUS.md not updated")

    def reach_milestone(self, label: str) -> str | None:
        """Tick a milestone that events outside the check reach (Full pipeline: the learner's model trained
        and chatted with). Blocking: call it from a thread worker. None, or why STATUS.md was not written."""
        from workbench.status.doc import StatusDoc, StatusDocError, milestone_key
        try:
            doc = StatusDoc.load(self.status_path)
            if any(m.key == milestone_key(label) and not m.done for m in doc.milestones):
                doc.set_milestones([label])
                doc.save()
        except (StatusDocError, OSError) as e:
            return str(e)
        return None

    # ---- hints, side by side, reset ---------------------------------------------------------------------------

    def action_hint(self) -> None:
        """h: the hint ladder for the function the learner is on, in the file the companion shows."""
        file = self.shown
        first = "GPT.__init__" if file.is_model else file.track_file.exercises[0].qualname
        self.push_screen(_screen("modals.hints", "HintScreen", self.current_method() or first, self.hint_levels,
                                 file.track_file))

    def action_attention(self) -> None:
        """Where each attention head of the learner's model looks, redrawn after every checked save."""
        self.push_screen(_screen("modals.attention", "AttentionScreen", self.learner_path))

    def action_compare(self) -> None:
        """The learner's function beside the reference's, in the file the companion shows (GPT or track file)."""
        qualname = self.compare_target()
        if qualname is None:
            self.notify("Nothing to compare yet: press v after a function passes.", severity="information")
            return
        path = self.shown_path
        try:
            source = read_learner_file(path, errors="replace")
        except OSError as e:
            self.notify(f"cannot read {path}: {e.strerror or e}", severity="error")
            return
        self.push_screen(_screen("modals.compare", "CompareScreen", qualname, source, self.shown_reference()))

    def compare_target(self) -> str | None:
        """What v shows: in the GPT file the method that passed last, else the current one; in a track file the
        function the learner is on, else the last of its exercises that passes."""
        if self.shown.is_model:
            return self.last_passed or self.current_method()
        report = self.shown_report
        passed = [e.qualname for e in self.shown.track_file.exercises
                  if report is not None and report.status_of(e.qualname) == Status.PASS]
        return self.current_method() or (passed[-1] if passed else None)

    def shown_reference(self) -> Path:
        """The reference module the shown file is checked against (nanochat/gpt.py, nanochat/muon.py, ...)."""
        from workbench.course.methods import REFERENCE_FILE
        return REFERENCE_FILE if self.shown.is_model else self.shown.track_file.reference_path()

    def action_reset_method(self) -> None:
        """R: the function the learner is on, in the file shown, back to its skeleton body (u undoes it)."""
        file, qualname, path = self.shown, self.current_method(), self.shown_path
        methods = ALL_METHODS if file.is_model else [e.qualname for e in file.track_file.exercises]
        if qualname is None or qualname not in methods:
            self.notify("Reset works on the function you are on (the next TODO or the failing one); there is "
                        "none right now.", severity="information")
            return
        self.push_screen(ConfirmScreen(f"Reset {qualname} to its skeleton body (the TODO), leaving the rest of "
                                       f"{path.name} alone?\n\nu undoes it.", yes="Reset (y)"),
                         lambda yes: self._reset(path, file, qualname) if yes else None)

    def _reset(self, path: Path, file: LearnerFile, qualname: str) -> None:
        from workbench.course.methods import MethodNotFound, method_source, replace_method
        try:
            text = read_learner_file(path)
            before = method_source(text, qualname)
            new_text = replace_method(text, qualname, skeleton_of(file, qualname))
            atomic_write(path, new_text)
        except (SyntaxError, MethodNotFound) as e:
            self.notify(f"Cannot find {qualname} in {path.name} ({type(e).__name__}: {e}); fix the file so it "
                        f"parses first.", title="Not reset", severity="error")
            return
        except OSError as e:
            self.notify(f"cannot write {path}: {e.strerror}", title="Not reset", severity="error")
            return
        self._undo.append((path, qualname, before, new_text))
        self.notify(f"{qualname} is back to its TODO. Press u to undo.", title="Reset")

    def action_undo_reset(self) -> None:
        """Put back the function as it was before the last reset (other edits since then are kept)."""
        from workbench.course.methods import MethodNotFound, replace_method
        if not self._undo:
            self.notify("Nothing to undo.", severity="information")
            return
        path, qualname, before, after = self._undo.pop()
        try:
            text = read_learner_file(path)
            atomic_write(path, replace_method(text, qualname, before))
        except (SyntaxError, MethodNotFound, OSError) as e:
            self._undo.append((path, qualname, before, after))
            self.notify(f"Could not put {qualname} back ({e}).", title="Undo failed", severity="error")
            return
        self.notify(f"{qualname} is back as you had it in {path.name}.", title="Undone")

    # ---- the issue log (workbench/status/issue_log.py) --------------------------------------------------------

    def action_file_issue(self) -> None:
        """i: file what the companion shows as going wrong as a dated entry in STATUS.md's issue log."""
        problem = shown_problem(self.shown_report)
        if problem is None:
            self.notify("Nothing is wrong in the file shown: i files an error or a mismatch when there is one.",
                        severity="information")
            return
        self.write_issue(*problem)

    @work(thread=True, group="status-write", exit_on_error=False)
    def write_issue(self, problem: str, error: str) -> None:
        from workbench.status.issue_log import add_issue_entry
        failure = add_issue_entry(self.status_path, problem, error)
        if failure:
            self.call_from_thread(self.notify, failure, title="Issue not filed", severity="error", timeout=12)
        else:
            self.call_from_thread(self.notify, f"{problem}. Add the solution and the lesson learned there.",
                                  title="Filed in STATUS.md's issue log")

    # ---- lessons and notes ------------------------------------------------------------------------------------

    def action_open_lesson(self) -> None:
        """Open the lesson for the method the learner is on (next TODO, regression or mismatch)."""
        qualname = self.current_method()
        self.lesson_request = (self.shown.lesson_for(qualname), qualname)
        self.switch_mode("lessons")

    def action_open_reference_lesson(self, topic: str) -> None:
        """m: the math primer; the glossary (palette): lessons found by the name after their number."""
        from workbench.course.lessons import list_lessons
        try:
            lesson = next((x for x in list_lessons() if x.name.split("-", 1)[-1].startswith(topic)), None)
        except FileNotFoundError:
            lesson = None
        if lesson is None:
            self.notify(f"There is no {topic} lesson in the lessons folder.", severity="warning")
            return
        self.lesson_request = (lesson.name, None)
        self.switch_mode("lessons")

    def current_method(self) -> str | None:
        """The function the learner is on in the file the companion shows."""
        return self.shown_report.current_method() if self.shown_report is not None else None

    def notes_for(self, lesson) -> tuple[dict[str, str], str]:
        """The answers and notes already saved for a lesson (pending, unsaved edits included)."""
        pending = self._notes_pending.get(lesson.name)
        if pending is not None:
            return dict(pending.answers), pending.notes
        from workbench.status.doc import StatusDoc, StatusDocError
        from workbench.status.notes import read_notes
        try:
            return read_notes(StatusDoc.load(self.status_path), lesson.name)
        except StatusDocError:
            return {}, ""

    def on_note_edited(self, message) -> None:  # widgets.notes_pane.NoteEdited
        self._notes_pending[message.lesson] = message
        if self._notes_timer is not None:
            self._notes_timer.stop()
        self._notes_timer = self.set_timer(NOTES_DEBOUNCE_S, self.save_notes)

    def save_notes(self) -> None:
        pending, self._notes_pending = self._notes_pending, {}
        if pending:
            self.write_notes(pending)

    @work(thread=True, group="notes-write", exit_on_error=False)
    def write_notes(self, pending: dict) -> None:
        error = _write_notes(self.status_path, pending)
        if error:
            self.call_from_thread(self.notify, error, title="Notes not saved", severity="error", timeout=15)

    def flush_notes(self) -> None:
        """Write pending notes now, in this thread (on quit)."""
        if self._notes_timer is not None:
            self._notes_timer.stop()
        pending, self._notes_pending = self._notes_pending, {}
        if pending:
            error = _write_notes(self.status_path, pending)
            if error:
                print(f"nanochat-workbench: {error}")

    async def action_quit(self) -> None:
        self.flush_notes()
        self.exit()

    # ---- actions ----------------------------------------------------------------------------------------------

    def action_rerun(self) -> None:
        if self.shown.is_model:
            self.run_check("by hand")
        else:
            self.run_track_check(self.shown_file, time.perf_counter())

    def action_edit(self) -> None:
        """Hand the terminal to $VISUAL/$EDITOR on the learner's file; the watcher picks up the save."""
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or _fallback_editor()
        if not editor:
            self.notify("Set $EDITOR (e.g. export EDITOR=nano), or edit the file in another window: "
                        "every save is checked.", title="No editor", severity="warning")
            return
        report = self.shown_report
        line = ((report.result.get("next_todo") or report.result.get("error") or {}).get("line")
                if report else None)
        args = shlex.split(editor)
        if line and Path(args[0]).name in ("vi", "vim", "nvim", "nano", "emacs", "micro", "kak", "hx"):
            args.append(f"+{line}")
        try:
            with self.suspend():
                subprocess.call([*args, str(self.shown_path)])
        except Exception as e:  # SuspendNotSupported (e.g. textual-web), or the editor not found
            self.notify(f"Could not open the editor ({e}). Edit {self.shown_path} in another window.",
                        title="Editor", severity="warning")
        self.refresh()

    def action_help(self) -> None:
        if type(self.screen).__name__ != "HelpScreen":
            self.push_screen(_screen("modals.help", "HelpScreen"))

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        # every key of the app, then every key of the screen in front (start/cancel a run, search a lesson, ...)
        app_actions = {binding.action for binding in self.BINDINGS}
        for binding in self.BINDINGS:
            if binding.action not in ("help", "quit"):
                yield SystemCommand(binding.description, f"{binding.tooltip} (key {self.get_key_display(binding)})",
                                    lambda action=binding.action: self.call_later(self.run_action, action))
        for binding in getattr(screen, "BINDINGS", []):
            if (isinstance(binding, Binding) and binding.description and binding.action != "leave_input"
                    and binding.action.removeprefix("app.") not in app_actions):
                where = f"{type(screen).__name__.removesuffix('Screen')} screen"
                yield SystemCommand(binding.description, f"{binding.tooltip or where} (key {binding.key})",
                                    lambda action=binding.action: self.call_later(screen.run_action, action))
        yield SystemCommand("Glossary", "The glossary lesson: the words of the course, each in a few lines",
                            lambda: self.action_open_reference_lesson("glossary"))
        yield SystemCommand("Help", "Every key and what each screen does", self.action_help)


def _screen(module: str, name: str, *args):
    """A screen from workbench/tui/screens/<module>.py, imported on first use (keeps start-up light)."""
    import importlib
    return getattr(importlib.import_module(f"workbench.tui.screens.{module}"), name)(*args)


def skeleton_of(file: LearnerFile, qualname: str) -> str:
    """The skeleton's version of one function of a learner file: the GPT template's, or the one `init --track`
    makes from the track's reference module."""
    from workbench.course.methods import skeleton_method
    if file.is_model:
        return skeleton_method(qualname)
    from workbench.tracks.skeleton import make_skeleton
    return skeleton_method(qualname, make_skeleton(file.track, file.track_file))


def _write_notes(status_path: Path, pending: dict) -> str | None:
    from workbench.status.doc import StatusDoc, StatusDocError
    from workbench.status.notes import write_notes
    try:
        doc = StatusDoc.load(status_path)
        for note in pending.values():
            write_notes(doc, note.lesson, note.title, note.answers, note.notes)
        doc.save()
    except StatusDocError as e:
        return f"{e}. Your notes are still in the notes pane; copy them somewhere safe."
    except OSError as e:
        return f"cannot write {status_path} ({e.strerror or e}); your notes are still in the notes pane."
    return None


def _summary(result: dict, regressions) -> str:
    comps = result.get("components") or []
    passed = sum(1 for c in comps if c.get("status") == Status.PASS)
    head = f"{passed}/{len(comps)} pass" if comps else result.get("stage", "")
    if regressions:
        head += f" · {len(regressions)} regressed"
    return head


def _fallback_editor() -> str | None:
    for name in ("nano", "vim", "vi"):
        if shutil.which(name):
            return name
    return None
