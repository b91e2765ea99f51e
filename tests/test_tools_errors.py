"""The book's own tools (book/_tools/*.py) refuse bad input the way argparse does: an error line naming the
problem and a nonzero exit, never a raw traceback; a genuine bug still shows its traceback.

Issue 22 item 6 ("three book/_tools crashes"), probed as a hostile user would, each script run as a subprocess:
``execute.py`` crashed (ValueError from ``relative_to``) on any notebook outside the repository, and on a
missing file, a text file, a non-JSON or non-notebook ``.ipynb`` or a folder (after minutes of model training);
with ``--out`` naming a file it executed the chapter first and then crashed; without arguments it trained the
zoo models and did nothing. ``calibration.py`` crashed on a report line that is not JSON, not an object or lacks
a field, and took ``--help`` for a folder. ``reflow_code.py`` crashed on a missing or non-notebook file. The two
one-off scripts crashed when run from another folder and ran (rewriting chapters) on ``--help``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "book" / "_tools"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
sys.path.insert(0, str(TOOLS))


def _tool(name: str, *args, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / name), *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


def _refused(res: subprocess.CompletedProcess, status: int, *fragments: str) -> str:
    """A usage-style refusal: the exit status, no traceback, and the last line the one error naming it."""
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == status, (res.returncode, res.stderr)
    last = res.stderr.strip().splitlines()[-1]
    assert "error:" in last or status == 1, last
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    return last


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hostile")
    (d / "not_json.ipynb").write_text("not json {", encoding="utf-8")
    (d / "notes.txt").write_text("hello\n", encoding="utf-8")
    (d / "not_a_notebook.ipynb").write_text('{"cells": 5}', encoding="utf-8")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    nbformat.write(nb, d / "tiny.ipynb")
    return {"dir": d, "missing": d / "missing.ipynb", **{p.stem: p for p in d.iterdir()}}


def _chapters() -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted((ROOT / "book").glob("*.ipynb"))}


# ------------------------------------------------------------------------------------------------- execute.py
@pytest.mark.parametrize("case,args,fragments", [
    ("no notebooks", [], ["give the notebooks to execute, or --all"]),
    ("--all and a notebook", ["--all", "book/abstract.ipynb"], ["not both"]),
    ("missing file", ["--out", "{dir}/o", "{missing}"], ["missing.ipynb does not exist"]),
    ("a text file", ["--out", "{dir}/o", "{notes}"], ["notes.txt is not a Jupyter notebook"]),
    ("not JSON", ["--out", "{dir}/o", "{not_json}"], ["not_json.ipynb is not a Jupyter notebook", "JSON"]),
    ("JSON, not a notebook", ["--out", "{dir}/o", "{not_a_notebook}"], ["not_a_notebook.ipynb is not a Jupyter"]),
    ("a folder", ["--out", "{dir}/o", "{dir}"], ["is not a file"]),
    ("--out is a file", ["--out", "{notes}", "book/abstract.ipynb"], ["--out", "notes.txt exists and is not a folder"]),
    ("in place, outside the repo", ["{tiny}"], ["tiny.ipynb is outside the repository", "--out"]),
    ("a bad option", ["--bogus"], ["unrecognized arguments: --bogus"]),
])
def test_execute_refuses_bad_input_before_any_work(files, case, args, fragments):
    before = _chapters()
    res = _tool("execute.py", *[a.format(**files) for a in args])
    _refused(res, 2, *fragments)
    assert res.stdout == "" and not (files["dir"] / "o").exists()  # nothing executed, nothing written
    assert _chapters() == before


def test_execute_runs_a_notebook_outside_the_repository_into_out(files, tmp_path):
    """Before, printing the path relative to the repository raised ValueError (a traceback) for any notebook
    outside it, even with --out. The copy holds the cell's output; the notebook itself is untouched."""
    before = files["tiny"].read_bytes()
    res = _tool("execute.py", "--out", tmp_path / "o", files["tiny"])
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert res.stdout.startswith(f"{files['tiny']}: ") and res.stdout.rstrip().endswith(" s")
    outputs = nbformat.read(tmp_path / "o" / "tiny.ipynb", as_version=4).cells[0].outputs
    assert [o.get("text") for o in outputs] == ["42\n"] and files["tiny"].read_bytes() == before


# --------------------------------------------------------------------------------------------- calibration.py
def _report_record(folder: Path, rule: dict, ref: str, test: str, cell: str = "c1") -> str:
    """One line as the portability runs write it (drift.append_report, the real writer)."""
    import drift

    scratch = folder / "scratch.json"  # (not *.jsonl: calibration reads those)
    outputs = lambda text: [{"output_type": "stream", "name": "stdout", "text": text}]  # noqa: E731
    drift.append_report(scratch, "chapter.ipynb", {"id": cell}, rule,
                        drift.observed(outputs(ref), outputs(test), []), None)
    line = scratch.read_text(encoding="utf-8")
    scratch.unlink()
    return line


@pytest.mark.parametrize("case,body,fragments", [
    ("not JSON", "{bad\n", ["x86.jsonl:1 is not JSON"]),
    ("a list", "[1, 2]\n", ["x86.jsonl:1 holds a JSON list"]),
    ("no rule", '{"notebook": "a.ipynb", "cell": "c"}\n', ["x86.jsonl:1: 'rule' is None"]),
    ("a rule that is no rule", '{"notebook": "a.ipynb", "cell": "c", "rule": "loose", "passed": true}\n',
     ["'rule' is 'loose'"]),
    ("fields missing", '{"notebook": "a.ipynb", "cell": "c", "rule": {"rtol": 0.1}, "passed": true, '
                       '"comparable": true}\n', ["x86.jsonl:1 lacks the field(s) max_rel, max_abs"]),
    ("second line bad", "{good}\n{}\n", ["x86.jsonl:2"]),
])
def test_calibration_names_the_bad_report_line(tmp_path, case, body, fragments):
    good = _report_record(tmp_path, {"rtol": 0.1}, "loss 2.50", "loss 2.51")
    (tmp_path / "x86.jsonl").write_text(body.replace("{good}", good.strip()), encoding="utf-8")
    _refused(_tool("calibration.py", tmp_path), 1, *fragments)


def test_calibration_reads_what_the_drift_reports_write(tmp_path):
    (tmp_path / "aarch64.jsonl").write_text(_report_record(tmp_path, {"rtol": 0.1}, "loss 2.50", "loss 2.51"),
                                               encoding="utf-8")
    res = _tool("calibration.py", tmp_path)
    assert res.returncode == 0, res.stderr
    assert "| chapter | c1 | rtol 0.1 | 0.40% (abs 0.01) |" in res.stdout


@pytest.mark.parametrize("args,status,fragments", [
    (["--bogus"], 2, ["unrecognized arguments: --bogus"]),
    (["{notes}"], 2, ["notes.txt is not a folder of drift reports"]),
    (["{dir}/no_such_folder"], 1, ["no drift reports in", "no_such_folder"]),
])
def test_calibration_usage_errors(files, args, status, fragments):
    _refused(_tool("calibration.py", *[a.format(**files) for a in args]), status, *fragments)


def test_calibration_help_is_help_not_a_folder_name():
    res = _tool("calibration.py", "--help")
    assert res.returncode == 0 and res.stdout.startswith("usage:") and res.stderr == ""


def test_a_genuine_bug_in_a_tool_keeps_its_traceback(tmp_path):
    (tmp_path / "x86.jsonl").write_text(_report_record(tmp_path, {"rtol": 0.1}, "loss 2.50", "loss 2.51"),
                                               encoding="utf-8")
    code = (f"import sys; sys.path.insert(0, {str(TOOLS)!r}); import calibration\n"
            "def table(reports): raise ZeroDivisionError('a bug')\n"
            f"calibration.table = table; sys.exit(calibration.main([{str(tmp_path)!r}]))\n")
    res = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "Traceback" in res.stderr and "ZeroDivisionError: a bug" in res.stderr


# --------------------------------------------------------------------------------------------- reflow_code.py
@pytest.mark.parametrize("args,fragments", [
    ([], ["required: notebooks"]),
    (["{missing}"], ["missing.ipynb cannot be read: No such file"]),
    (["{notes}"], ["notes.txt is not a Jupyter notebook"]),
    (["{not_json}"], ["not_json.ipynb is not a Jupyter notebook"]),
    (["{not_a_notebook}"], ["not_a_notebook.ipynb is not a Jupyter notebook"]),
    (["{dir}"], ["cannot be read"]),
    (["--write", "{tiny}", "{not_json}"], ["not_json.ipynb"]),  # checked before the first one is written
])
def test_reflow_refuses_what_is_not_a_notebook(files, args, fragments):
    before = files["tiny"].read_bytes()
    _refused(_tool("reflow_code.py", *[a.format(**files) for a in args]), 2, *fragments)
    assert files["tiny"].read_bytes() == before


# ------------------------------------------------------------------- the one-off chapter scripts, diagrams, sync
@pytest.mark.parametrize("script", ["add_diagram_cells.py", "add_figure_metadata.py"])
def test_one_off_scripts_take_no_arguments_and_write_nothing_when_asked_for_help(script, tmp_path):
    """Before, both ignored their arguments: `--help` rewrote the chapters (from the repository root) or
    crashed with FileNotFoundError (from any other folder, the chapter paths being relative)."""
    before = _chapters()
    res = _tool(script, "--help", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.startswith("usage:") and "Traceback" not in res.stderr
    _refused(_tool(script, "--bogus", cwd=tmp_path), 2, "unrecognized arguments: --bogus")
    assert _chapters() == before


@pytest.mark.parametrize("script,anchor", [("add_diagram_cells", "model-04"), ("add_figure_metadata", "abstract-03")])
def test_one_off_scripts_refuse_a_chapter_whose_cells_moved_before_writing_any(script, anchor, tmp_path,
                                                                              capsys):
    """A chapter that lost the cell a script edits: before, add_diagram_cells raised ValueError from
    list.index and add_figure_metadata wrote every chapter, then failed an assert; now one error line,
    and no chapter is written."""
    import importlib

    module = importlib.import_module(script)
    inserted = {new_id for cells in getattr(module, "CELLS", {}).values() for _, new_id, *_ in cells}
    (tmp_path / "book").mkdir()
    for path in (ROOT / "book").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        nb.cells = [c for c in nb.cells if c.get("id") not in inserted]  # as before the diagrams were added
        for cell in nb.cells:
            if cell.get("id") == anchor:
                cell["id"] = anchor + "-renamed"
        nbformat.write(nb, tmp_path / "book" / path.name)
    before = {p.name: p.read_bytes() for p in (tmp_path / "book").iterdir()}
    with pytest.raises(SystemExit) as info:
        module.main([], root=tmp_path)
    assert info.value.code == 2 and anchor in capsys.readouterr().err
    assert before == {p.name: p.read_bytes() for p in (tmp_path / "book").iterdir()}


@pytest.mark.parametrize("script", ["diagrams.py", "sync_notebooks.py"])
def test_the_other_tools_refuse_a_bad_option(script):
    before = _chapters()
    _refused(_tool(script, "--bogus"), 2, "unrecognized arguments: --bogus")
    assert _chapters() == before


# ------------------------------------------------------------------------------- GPT2LIB_DRIFT_REPORT (conftest)
@pytest.mark.parametrize("where,fragment", [("folder", "is a folder"), ("under_a_file", "is a file, not a folder")])
def test_a_drift_report_path_that_cannot_be_written_is_one_usage_error(files, where, fragment):
    """Before, a GPT2LIB_DRIFT_REPORT naming a folder (or a path below a file) surfaced only when a drift-ruled
    cell was compared off the committed bits: drift.append_report's open() raised OSError inside that cell's
    comparison, and again in every such cell. Now pytest stops before any test with one line."""
    report = files["dir"] if where == "folder" else files["notes"] / "x86.jsonl"
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-q",
                          "tests/test_tools_errors.py", "-k", "help_is_help"], cwd=ROOT, capture_output=True,
                         text=True, env={**ENV, "GPT2LIB_DRIFT_REPORT": str(report)}, timeout=120)
    assert res.returncode == 4 and "Traceback" not in res.stderr, res.stderr  # pytest's usage-error status
    lines = [line for line in res.stderr.splitlines() if "GPT2LIB_DRIFT_REPORT" in line]
    assert len(lines) == 1 and lines[0].startswith(f"ERROR: GPT2LIB_DRIFT_REPORT={report}: ") and fragment in lines[0]


def test_a_drift_report_in_a_folder_not_yet_made_is_written_there(tmp_path):
    import drift

    report = tmp_path / "new" / "x86.jsonl"
    assert drift.report_problem(report) is None and report.parent.is_dir()
    drift.append_report(report, "chapter.ipynb", {"id": "c1"}, {"rtol": 0.1}, {"comparable": False}, None)
    assert json.loads(report.read_text())["cell"] == "c1"
