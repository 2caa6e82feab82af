"""STATUS.md never loses a byte: a real doc writer ticking while another process saves the file in place and by
rename; a file that looks cut off, an empty or read-only file, temp files of an interrupted write, the backup."""

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workbench.course.workspace import render_status
from workbench.status import doc as status_doc
from workbench.status.doc import StatusDoc, StatusDocError, backup_path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = render_status("learner_gpt.py")
STRESS_S = float(os.environ.get("WB_STATUS_STRESS_S", "40"))

# the workbench side: load, tick or untick one item, save; as fast as it can, until told to stop
WRITER = textwrap.dedent("""
    import os, sys
    from workbench.course.phases import ALL_METHODS
    from workbench.status.doc import StatusDoc, StatusDocError
    path, stop = sys.argv[1], sys.argv[2]
    n = saves = refused = 0
    while not os.path.exists(stop):
        name = ALL_METHODS[n % len(ALL_METHODS)]
        try:
            doc = StatusDoc.load(path)
            doc.tick({name}) if (n // len(ALL_METHODS)) % 2 == 0 else doc.tick((), {name})
            saves += doc.save()
        except StatusDocError as e:
            refused += 1
        n += 1
    print(saves, refused)
""")

# the learner side: read the file, add a line of their own at the end, save it; every other save in place
# (truncate, then write in two parts with pauses, as vim with backupcopy=yes or many IDEs do), the others by
# writing a temp file and renaming it over STATUS.md
LEARNER = textwrap.dedent("""
    import os, random, sys, time
    path, seconds = sys.argv[1], float(sys.argv[2])
    end, i = time.time() + seconds, 0
    rng = random.Random(0)
    while time.time() < end:
        with open(path, "rb") as f:
            text = f.read()
        new = text + f"- my note {i}\\n".encode()
        if i % 2:
            with open(path, "wb", buffering=0) as f:
                time.sleep(rng.random() * 0.002)
                half = rng.randrange(len(new))
                f.write(new[:half])
                time.sleep(rng.random() * 0.002)
                f.write(new[half:])
        else:
            with open(path + ".swp", "wb") as f:
                f.write(new)
            os.replace(path + ".swp", path)
        i += 1
        time.sleep(rng.random() * 0.1)
    print(i)
""")


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_ticks_while_the_learner_saves_in_place_and_by_rename_lose_no_line(tmp_path):
    path = tmp_path / "STATUS.md"
    path.write_text(TEMPLATE, encoding="utf-8")
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(stop)], cwd=ROOT, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        learner = subprocess.run([sys.executable, "-c", LEARNER, str(path), str(STRESS_S)], cwd=ROOT, env=_env(),
                                 capture_output=True, text=True, timeout=STRESS_S + 60)
        assert learner.returncode == 0, learner.stderr
        time.sleep(0.5)  # a few more ticks after the learner's last save
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    saves, refused = map(int, out.split())
    notes = int(learner.stdout)
    final = path.read_text(encoding="utf-8")
    lost = [i for i in range(notes) if f"- my note {i}\n" not in final]
    print(f"{notes} learner saves, {saves} workbench saves ({refused} refused) in {STRESS_S:.0f} s")
    assert notes > 3 * STRESS_S and saves > 3 * STRESS_S, "the two sides barely ran: nothing was tested"
    assert lost == [], f"{len(lost)} of {notes} learner lines lost, the first {lost[:5]}"
    assert final.startswith(TEMPLATE.split("\n")[0])
    assert sorted(os.listdir(tmp_path)) in ([".STATUS.md.bak", "STATUS.md", "stop"], ["STATUS.md", "stop"])


def test_a_save_in_place_caught_between_truncate_and_write_is_waited_for(tmp_path):
    path = tmp_path / "STATUS.md"
    path.write_text(TEMPLATE, encoding="utf-8")
    doc = StatusDoc.load(path)
    doc.tick({"norm"})
    doc.save()  # the workbench now knows the file whole
    doc.tick({"GPT.forward"})
    edited = TEMPLATE + "\nMy notes at the end.\n"
    cut = edited[:edited.index("- [ ] `GPT.__init__`")]  # what the editor has written so far
    path.write_text(cut, encoding="utf-8")
    writer = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(0.4); "
                               "open(sys.argv[1], 'w', encoding='utf-8').write(sys.argv[2])", str(path), edited])
    doc.save()
    writer.wait(timeout=30)
    after = path.read_text(encoding="utf-8")
    assert after.endswith("\nMy notes at the end.\n") and "- [x] `GPT.forward`" in after


def test_an_empty_status_md_is_never_written(tmp_path):
    path = tmp_path / "STATUS.md"
    path.write_text(TEMPLATE, encoding="utf-8")
    doc = StatusDoc.load(path)
    doc.tick({"norm"})
    path.write_text("", encoding="utf-8")
    os.utime(path, (time.time() - 10, time.time() - 10))
    with pytest.raises(StatusDocError, match="is empty"):
        doc.save()
    assert path.read_bytes() == b""


def test_a_file_cut_short_that_stays_so_is_what_the_learner_wanted(tmp_path, monkeypatch):
    monkeypatch.setattr(status_doc, "SHRINK_QUIET_S", 0.2)
    path = tmp_path / "STATUS.md"
    path.write_text(TEMPLATE, encoding="utf-8")
    doc = StatusDoc.load(path)
    doc.tick({"norm"})
    doc.save()
    short = TEMPLATE[:TEMPLATE.index("## Phase 2")]  # the learner deleted everything after phase 1
    path.write_text(short, encoding="utf-8")
    doc.tick({"GPT.__init__"})
    doc.save()
    after = path.read_text(encoding="utf-8")
    assert "## Phase 2" not in after and "- [x] `GPT.__init__`" in after


def test_a_read_only_status_md_is_left_alone(tmp_path):
    path = tmp_path / "STATUS.md"
    path.write_text(TEMPLATE, encoding="utf-8")
    os.chmod(path, 0o444)
    doc = StatusDoc.load(path)
    doc.tick({"norm"})
    with pytest.raises(StatusDocError, match="read-only"):
        doc.save()
    assert path.read_text(encoding="utf-8") == TEMPLATE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert os.listdir(tmp_path) == ["STATUS.md"]


def test_the_learners_replaced_version_is_kept_as_a_backup(tmp_path):
    path = tmp_path / "STATUS.md"
    path.write_text(TEMPLATE, encoding="utf-8")
    doc = StatusDoc.load(path)
    doc.tick({"norm"})
    doc.save()
    assert Path(backup_path(path)).read_text(encoding="utf-8") == TEMPLATE
    doc.tick({"GPT.forward"})  # the workbench's own write is not worth a backup: the learner's stays
    doc.save()
    assert Path(backup_path(path)).read_text(encoding="utf-8") == TEMPLATE
    learner = path.read_text(encoding="utf-8") + "\nmine\n"
    path.write_text(learner, encoding="utf-8")
    doc.tick({"norm"}, {"GPT.forward"})
    doc.save()
    assert Path(backup_path(path)).read_text(encoding="utf-8") == learner


def test_temp_files_of_an_interrupted_write_are_removed_then_and_at_the_next_load(tmp_path, monkeypatch):
    path = tmp_path / "STATUS.md"
    path.write_text(TEMPLATE, encoding="utf-8")
    doc = StatusDoc.load(path)
    doc.tick({"norm"})

    def interrupted(tmp):
        raise KeyboardInterrupt

    doc._before_replace = interrupted
    with pytest.raises(KeyboardInterrupt):
        doc.save()
    assert os.listdir(tmp_path) == ["STATUS.md"] and path.read_text(encoding="utf-8") == TEMPLATE
    # a writer killed outright leaves its temp file: the next load removes it once it is old enough that no
    # write can still be in progress (minutes; a write takes milliseconds)
    left = tmp_path / ".STATUS.md.k1ll3d.tmp"
    left.write_text("half a write")
    StatusDoc.load(path)
    assert left.exists()  # this young, it may be another writer's
    monkeypatch.setattr(status_doc, "STALE_TEMP_S", 0.0)
    StatusDoc.load(path)
    assert os.listdir(tmp_path) == ["STATUS.md"]
