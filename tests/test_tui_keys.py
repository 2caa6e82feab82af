"""Every key is reachable and discoverable at 120x40 and at 80x24: each screen's footer keys fit on the line
(nothing cut at the right edge), `?` lists every key of the app and of every screen, and `m` / the palette's
Glossary open the math primer and the glossary lessons. No check runs here (run_checks=False): fast."""

import asyncio

import pytest
from textual.binding import Binding
from textual.widgets import Markdown
from textual.widgets._footer import FooterKey

from workbench.course.workspace import init_workspace
from workbench.tui.app import WorkbenchApp

pytestmark = [pytest.mark.timeout(120), pytest.mark.anyio]
SIZES = pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
SCREEN_KEYS = ("1", "2", "3", "4", "5")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "empty-base"))  # the chat screen has nothing to load
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    (lessons / "01-pipeline.md").write_text("---\ntitle: The pipeline\nteaches: []\n---\n\n# The pipeline\n")
    (lessons / "22-math-primer.md").write_text("---\ntitle: Math primer\nteaches: []\n---\n\n# Dot products\n")
    (lessons / "23-glossary.md").write_text("---\ntitle: Glossary\nteaches: []\n---\n\n# Glossary\n")
    monkeypatch.setenv("NANOCHAT_LESSONS_DIR", str(lessons))
    return init_workspace(tmp_path / "ws")


async def until(pilot, condition, timeout=20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def footer_keys(app) -> list[FooterKey]:
    return [k for k in app.screen.query(FooterKey) if "-command-palette" not in k.classes]


@SIZES
async def test_every_footer_key_fits_on_every_screen(workspace, size):
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=size) as pilot:
        for key in SCREEN_KEYS:
            await pilot.press(key)
            await until(pilot, lambda: footer_keys(app) and all(k.region.width for k in footer_keys(app)))
            await pilot.pause(0.1)
            palette = next(k for k in app.screen.query(FooterKey) if "-command-palette" in k.classes)
            for footer_key in footer_keys(app):
                assert footer_key.region.right <= palette.region.x, (key, footer_key.key, footer_key.region)
            shown = {k.key for k in footer_keys(app)}
            assert {"question_mark", "ctrl+q"} <= shown, (key, shown)  # help and quit are always in sight
        await pilot.press("1")
        await until(pilot, lambda: {"c", "i", "T", "l", "h", "e"} <= {k.key for k in footer_keys(app)})


def keys_of(app, binding: Binding) -> list[str]:
    if binding.key_display:
        return [binding.key_display]
    return [app.get_key_display(Binding(k.strip(), binding.action)) for k in binding.key.split(",")]


@SIZES
async def test_help_lists_every_key_of_the_app_and_of_every_screen(workspace, size):
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=size) as pilot:
        expected = {(b.description, key) for b in app.BINDINGS for key in keys_of(app, b)}
        for screen_key in SCREEN_KEYS:  # each screen as the app really builds it
            await pilot.press(screen_key)
            await pilot.pause(0.1)
            expected |= {(b.description, key) for b in type(app.screen).BINDINGS if isinstance(b, Binding)
                         and b.action != "leave_input" for key in keys_of(app, b)}
        from workbench.tui.screens.modals.attention import AttentionScreen
        from workbench.tui.screens.modals.hints import HintScreen
        for modal in (HintScreen, AttentionScreen):
            expected |= {(b.description, key) for b in modal.BINDINGS for key in keys_of(app, b)}
        await pilot.press("1")
        await pilot.press("question_mark")
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        source = app.screen.query_one(Markdown).source
        rows = [line for line in source.splitlines() if line.startswith("| `")]
        missing = {(what, key) for what, key in expected
                   if not any(f"`{key}`" in row and what in row for row in rows)}
        assert not missing, missing
        assert "ctrl+p" in source or "^p" in source  # the palette itself
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ != "HelpScreen")


@SIZES
async def test_m_opens_the_math_primer_and_the_palette_the_glossary(workspace, size):
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=size) as pilot:
        await pilot.press("m")
        await until(pilot, lambda: app.current_mode == "lessons")
        await until(pilot, lambda: getattr(app.screen.current, "name", None) == "22-math-primer.md")
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Glossary")
        command.callback()
        await until(pilot, lambda: getattr(app.screen.current, "name", None) == "23-glossary.md")
