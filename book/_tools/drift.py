"""How a chapter's outputs are checked on a machine that does not compute the committed float bits.

The chapters are executed and committed under the pinned numeric environment of :mod:`gpt2lib.numerics`, and
each records the fingerprint of the bits it ran on (:mod:`fingerprint`). Only a run with the same fingerprint
compares every output exactly (after ``tests/nbval_sanitize.cfg``). Anywhere else (another CPU vendor even under
the same variables, aarch64, another BLAS, a user who chose ``ATEN_CPU_CAPABILITY=default``) a model trained
inside a chapter ends with other bits, and everything computed from it drifts. Those cells carry a ``drift``
entry in their metadata that says how they are checked there instead:

``{"rtol": 0.05, "atol": 0.01}``
    The text must match with every number replaced by a placeholder (and runs of white space folded, since
    a table's alignment follows the width of its numbers), and each number must be within
    ``atol + rtol * |committed|`` of the committed one.
``{"check": "assert"}``
    The output is not compared (e.g. text sampled from a trained model); the cell's own ``assert`` statements
    check what must hold on any machine. A cell with this entry must contain an ``assert``.

Cells without a ``drift`` entry are compared exactly everywhere: they must not depend on trained floats.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable

NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][-+]?\d+)?|(?<![\w.])[-+]?\.\d+(?:[eE][-+]?\d+)?")
_SPACE = re.compile(r"\s+")


def _numbers(text: str) -> tuple[str, list[float]]:
    values = [float(m.group().replace(",", "")) for m in NUMBER.finditer(text)]
    skeleton = _SPACE.sub(" ", NUMBER.sub("#", text)).strip()
    return skeleton, values


def compare_text(ref: str, test: str, rtol: float, atol: float) -> str | None:
    """``None`` when ``test`` matches ``ref`` within the tolerances, else a one-line reason."""
    ref_skel, ref_nums = _numbers(ref)
    test_skel, test_nums = _numbers(test)
    if ref_skel != test_skel:
        return f"text differs beyond its numbers: {ref_skel[:300]!r} != {test_skel[:300]!r}"
    if len(ref_nums) != len(test_nums):
        return f"{len(test_nums)} numbers where {len(ref_nums)} were committed"
    for i, (r, t) in enumerate(zip(ref_nums, test_nums)):
        if math.isnan(r) and math.isnan(t):
            continue
        if not abs(t - r) <= atol + rtol * abs(r):
            return f"number {i} is {t:g}, committed {r:g}: outside atol={atol:g} + rtol={rtol:g}"
    return None


def texts(outputs: Iterable[dict[str, Any]], skip: Iterable[str]) -> list[tuple[str, str]]:
    """The comparable text of a cell's outputs: (kind, text) in order, streams joined per stream name."""
    skip = set(skip)
    out: list[tuple[str, str]] = []
    for o in outputs:
        if o.get("output_type") == "stream":
            text = o.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            if out and out[-1][0] == "stream:" + o.get("name", ""):
                out[-1] = (out[-1][0], out[-1][1] + text)
            else:
                out.append(("stream:" + o.get("name", ""), text))
        elif "data" in o:
            for mime, value in sorted(o["data"].items()):  # a kernel lists its mime types in its own order
                if mime in skip or not (mime.startswith("text/") or mime.endswith("json")):
                    continue
                out.append((mime, "".join(value) if isinstance(value, list) else str(value)))
    return out


def compare_outputs(ref: list[dict], test: list[dict], rule: dict[str, Any], skip: Iterable[str]) -> str | None:
    """Compare a cell's outputs under its ``drift`` rule; ``None`` when they agree, else the reason."""
    if rule.get("check") == "assert":
        return None
    rtol, atol = float(rule.get("rtol", 0.0)), float(rule.get("atol", 0.0))
    a, b = texts(ref, skip), texts(test, skip)
    if [k for k, _ in a] != [k for k, _ in b]:
        return f"output kinds differ: committed {[k for k, _ in a]}, now {[k for k, _ in b]}"
    for (kind, r), (_, t) in zip(a, b):
        reason = compare_text(r, t, rtol, atol)
        if reason:
            return f"{kind}: {reason}"
    return None


def validate_rule(rule: Any, source: str) -> str | None:
    """``None`` when a cell's ``drift`` metadata is well formed, else what is wrong with it."""
    if not isinstance(rule, dict):
        return "drift metadata must be an object"
    if rule.get("check") == "assert":
        return None if re.search(r"^\s*assert\b", source, re.M) else "drift check 'assert' but the cell asserts nothing"
    try:
        rtol, atol = float(rule["rtol"]), float(rule.get("atol", 0.0))
    except (KeyError, TypeError, ValueError):
        return "drift metadata needs a numeric 'rtol' (and optional 'atol') or {'check': 'assert'}"
    if not (0 <= rtol <= 1 and atol >= 0):
        return "drift tolerances must satisfy 0 <= rtol <= 1 and atol >= 0"
    return None


def observed(ref: list[dict], test: list[dict], skip: Iterable[str]) -> dict[str, Any]:
    """How far ``test``'s numbers moved from ``ref``'s: the largest relative and absolute change over the numbers
    of a cell whose texts match beyond their numbers (``{"comparable": False}`` otherwise)."""
    a, b = texts(ref, skip), texts(test, skip)
    pairs = []
    for (ka, ra), (kb, tb) in zip(a, b):
        (rs, rn), (ts, tn) = _numbers(ra), _numbers(tb)
        if ka != kb or rs != ts or len(rn) != len(tn):
            return {"comparable": False}
        pairs += [(r, t) for r, t in zip(rn, tn) if not (math.isnan(r) and math.isnan(t))]
    if len(a) != len(b):
        return {"comparable": False}
    rel = [abs(t - r) / abs(r) for r, t in pairs if r != 0]
    return {"comparable": True, "numbers": len(pairs), "max_rel": max(rel, default=0.0),
            "max_abs": max((abs(t - r) for r, t in pairs), default=0.0)}


def report_problem(path: str | Path) -> str | None:
    """Why ``GPT2LIB_DRIFT_REPORT=path`` cannot take the report's lines (checked once, before any chapter runs),
    or None. A missing folder is made."""
    path = Path(path)
    if path.is_dir():
        return "is a folder; name the .jsonl file to append the report to (e.g. _build/portability/x86.jsonl)"
    if path.parent.exists() and not path.parent.is_dir():
        return f"{path.parent} is a file, not a folder"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot make its folder {path.parent}: {e.strerror}"
    return None


def append_report(path: str | Path, notebook: Any, cell: Any, rule: dict, seen: dict, reason: str | None) -> None:
    """Append one JSON line about a drift-ruled cell to ``path`` (see ``book/_tools/calibration.py``)."""
    record = {"notebook": Path(str(notebook)).name, "cell": cell.get("id"), "rule": rule, **seen,
              "passed": reason is None, "reason": reason}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
