"""The drift rules against the drift actually observed: one markdown table from the portability runs' reports.

    python book/_tools/calibration.py [_build/portability]

Each report (``<path name>.jsonl``, written by ``conftest.py`` when ``GPT2LIB_DRIFT_REPORT`` is set, as
``tests/_portability.py`` does) holds, for every drift-ruled cell compared off the committed bits, the largest
relative and absolute change of its numbers. The table lists each cell once, with its rule, the largest change on
each path and the rule's headroom (rule / observed; above 1 passes). Cells whose rule is ``{"check": "assert"}``
are listed with the paths on which their asserts held.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(folder: Path) -> dict[str, dict[tuple[str, str], dict]]:
    """``{path name: {(notebook, cell id): record}}`` from every report in ``folder``. A line that is not such a
    record (not JSON, not an object, a field missing) is a ``ValueError`` naming the file and line."""
    out: dict[str, dict[tuple[str, str], dict]] = {}
    for report in sorted(folder.glob("*.jsonl")):
        cells = out.setdefault(report.stem, {})
        try:
            lines = report.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{report} cannot be read: {e}") from None
        for number, line in enumerate(lines, 1):
            if line.strip():
                r = _record(line, f"{report}:{number}")
                cells[(r["notebook"], r["cell"])] = r
    return out


def _record(line: str, where: str) -> dict:
    """One report line, checked to hold what :func:`table` reads (as ``drift.append_report`` writes it)."""
    try:
        r = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where} is not JSON ({e}); is this a drift report (GPT2LIB_DRIFT_REPORT)?") from None
    if not isinstance(r, dict):
        raise ValueError(f"{where} holds a JSON {type(r).__name__}, not a drift report record")
    need = ["notebook", "cell", "rule", "passed"]
    rule = r.get("rule")
    if not isinstance(rule, dict) or (rule.get("check") != "assert" and not isinstance(rule.get("rtol"), (int, float))):
        raise ValueError(f"{where}: 'rule' is {rule!r}, not a drift rule ({{'rtol': ..}} or {{'check': 'assert'}})")
    if rule.get("check") != "assert":
        need.append("comparable")
        if r.get("comparable"):
            need += ["max_rel", "max_abs"]
    missing = [k for k in need if k not in r]
    if missing:
        raise ValueError(f"{where} lacks the field(s) {', '.join(missing)}")
    if not isinstance(r["notebook"], str) or not isinstance(r["cell"], (str, type(None))):
        raise ValueError(f"{where}: 'notebook' must be a file name and 'cell' a cell id")
    if r.get("comparable") and not all(isinstance(r[k], (int, float)) and not isinstance(r[k], bool)
                                       for k in ("max_rel", "max_abs")):
        raise ValueError(f"{where}: 'max_rel' and 'max_abs' must be numbers")
    return r


def _rule(rule: dict) -> str:
    if rule.get("check") == "assert":
        return "asserts"
    parts = [f"rtol {rule['rtol']:g}"] + ([f"atol {rule['atol']:g}"] if rule.get("atol") else [])
    return ", ".join(parts)


def _seen(r: dict | None) -> str:
    if r is None:
        return "–"
    if r["rule"].get("check") == "assert":
        return "held" if r["passed"] else "FAILED"
    if not r.get("comparable"):
        return "text differs"
    return f"{r['max_rel']:.2%} (abs {r['max_abs']:.3g})" + ("" if r["passed"] else " FAILED")


def table(reports: dict[str, dict[tuple[str, str], dict]]) -> str:
    paths = sorted(reports)
    keys = sorted({k for cells in reports.values() for k in cells})
    head = ["chapter", "cell", "rule", *paths]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in keys:
        rec = next(reports[p][key] for p in reversed(paths) if key in reports[p])  # the newest report's rule
        rows.append("| " + " | ".join([key[0].removesuffix(".ipynb"), str(key[1]), _rule(rec["rule"]),
                                        *[_seen(reports[p].get(key)) for p in paths]]) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=Path("_build/portability"),
                        help="the folder of <path name>.jsonl reports (default: _build/portability)")
    args = parser.parse_args(argv)
    if args.folder.exists() and not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder of drift reports")
    try:
        reports = load(args.folder)
    except ValueError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    if not reports:
        print(f"no drift reports in {args.folder} (run tests/test_portability*.py first)", file=sys.stderr)
        return 1
    print(table(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
