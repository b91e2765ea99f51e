"""The chapters' set-up cell on a pretend Colab (issue 23): it installs when ``import gpt2lib`` fails, at the
commit the chapter records, keeps installed packages that satisfy the floors, and recovers when rerun after a
failed install.

The cell runs in a fresh virtual environment that sees this machine's packages (``--system-site-packages``,
so pip has nothing to download but gpt2lib's build requirements) with a fake ``google.colab`` module, the
developer's own gpt2lib hidden, and a local clone of this repository as ``REPO_URL``. The first install is
made to fail (a pip constraint no version meets); rerunning the cell must then install and import gpt2lib.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_tools"))
from sync_notebooks import setup_cell_source  # noqa: E402

DRIVER = r"""
import json, os, subprocess, sys, types
cell, clone, impossible = sys.argv[1], sys.argv[2], sys.argv[3]
sys.modules["google.colab"] = types.ModuleType("google.colab")  # what Colab's kernel has imported
# hide the developer's gpt2lib (an editable install, PYTHONPATH): a fresh Colab has none
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path = [p for p in sys.path if not os.path.isfile(os.path.join(p or ".", "gpt2lib", "__init__.py"))]
report = {}
try:
    import gpt2lib
    report["hidden"] = False
except ImportError:
    report["hidden"] = True
source = open(cell).read()
os.environ["GPT2_BOOK_CLONE"] = clone
os.environ["PIP_CONSTRAINT"] = impossible  # the first install fails (as a dropped connection would)
try:
    exec(compile(source, "setup-cell", "exec"), {})
    report["first"] = "ran"
except subprocess.CalledProcessError as e:
    report["first"] = "failed"
report["clone_after_failure"] = os.path.isdir(os.path.join(clone, ".git"))
del os.environ["PIP_CONSTRAINT"]
exec(compile(source, "setup-cell", "exec"), {})  # the reader reruns the cell
import gpt2lib
report["gpt2lib"] = gpt2lib.__file__
report["cwd"] = os.getcwd()
report["head"] = subprocess.check_output(["git", "-C", clone, "rev-parse", "HEAD"], text=True).strip()
report["kept"] = open(os.path.join(clone, ".installed.txt")).read().split()
os.environ["PIP_CONSTRAINT"] = impossible
exec(compile(source, "setup-cell", "exec"), {})  # once installed, a rerun installs nothing (it would fail)
report["third"] = "ran"
print("REPORT " + json.dumps(report))
"""


def git(*args, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.slow
def test_setup_cell_installs_the_recorded_commit_and_recovers_after_a_failed_install(tmp_path):
    # the "repository": a clone of this one with one newer commit, so that the recorded commit is not its tip
    src = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(src)], check=True)
    recorded = git("rev-parse", "HEAD", cwd=src)
    (src / "NEWER.txt").write_text("a later commit the chapter was not run with\n")
    git("add", "NEWER.txt", cwd=src)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "newer", cwd=src)
    assert git("rev-parse", "HEAD", cwd=src) != recorded

    floors = {"torch": "2.3.1", "tqdm": "999"}  # tqdm "below its floor": left free for pip to change
    cell = tmp_path / "cell.py"
    cell.write_text(setup_cell_source(str(src), recorded, "experiments", floors))
    impossible = tmp_path / "impossible.txt"
    impossible.write_text("gpt2lib==0.0.0.dev0\n")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_CONSTRAINT")}
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    clone = tmp_path / "content" / "gpt2-book"
    out = subprocess.run([str(venv / "bin" / "python"), str(driver), str(cell), str(clone), str(impossible)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    report = json.loads(out.stdout.split("REPORT ", 1)[1])
    assert report["hidden"] is True  # the test really starts without gpt2lib
    assert report["first"] == "failed" and report["clone_after_failure"]  # failed, leaving the clone behind
    assert Path(report["gpt2lib"]).is_relative_to(venv)  # installed by the rerun, into the fresh environment
    assert report["head"] == recorded  # the commit the chapter records, not the repository's tip
    assert report["cwd"] == str(clone / "book")
    kept = {line.split("==")[0].lower() for line in report["kept"]}
    assert "torch" in kept and "tqdm" not in kept  # at or above its floor: kept; below: free to change
    assert report["third"] == "ran"


def test_setup_cell_refuses_a_folder_that_is_not_a_clone(tmp_path, monkeypatch):
    """A non-git folder where the clone should go is left alone, with a message saying what to do."""
    import types

    folder = tmp_path / "gpt2-book"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    monkeypatch.setenv("GPT2_BOOK_CLONE", str(folder))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setitem(sys.modules, "gpt2lib", None)  # `import gpt2lib` fails, as on a fresh Colab
    with pytest.raises(RuntimeError, match="exists but is not a git clone"):
        exec(compile(setup_cell_source("https://example.invalid/repo"), "setup-cell", "exec"), {})
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
