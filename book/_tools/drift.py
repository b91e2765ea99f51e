"""How a chapter's outputs are checked on a machine whose float kernels differ from the committed run's.

The chapters are executed and committed under the pinned numeric environment of :mod:`gpt2lib.numerics`;
under that same environment nbval compares every output exactly (after ``tests/nbval_sanitize.cfg``). Under
any other kernel path (aarch64, another BLAS, a user who chose ``ATEN_CPU_CAPABILITY=default``) a model
trained inside a chapter ends with other bits, and everything computed from it drifts. Those cells carry a
``drift`` entry in their metadata that says how they are checked there instead:

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

import math
import re
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
