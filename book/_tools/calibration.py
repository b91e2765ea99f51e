"""The drift rules against the drift actually observed: one markdown table from the portability runs' reports.

    python book/_tools/calibration.py [_build/portability]

Each report (``<path name>.jsonl``, written by ``conftest.py`` when ``GPT2LIB_DRIFT_REPORT`` is set, as
``tests/_portability.py`` does) holds, for every drift-ruled cell compared off the committed bits, the largest
relative and absolute change of its numbers. The table lists each cell once, with its rule, the largest change on
each path and the rule's headroom (rule / observed; above 1 passes). Cells whose rule is ``{"check": "assert"}``
are listed with the paths on which their asserts held.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def load(folder: Path) -> dict[str, dict[tuple[str, str], dict]]:
    """``{path name: {(notebook, cell id): record}}`` from every report in ``folder``."""
    out: dict[str, dict[tuple[str, str], dict]] = {}
    for report in sorted(folder.glob("*.jsonl")):
        cells = out.setdefault(report.stem, {})
        for line in report.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                cells[(r["notebook"], r["cell"])] = r
    return out


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
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0] if argv else "_build/portability")
    reports = load(folder)
    if not reports:
        print(f"no drift reports in {folder} (run tests/test_portability*.py first)", file=sys.stderr)
        return 1
    print(table(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
