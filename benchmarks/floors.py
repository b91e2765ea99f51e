"""Print the lower bounds pyproject.toml declares, as pip constraints (``name==X``); used by floors.sh.

Covers the runtime dependencies, the ``experiments`` and ``scale`` extras and ``transformers``; only
requirements written ``name>=X`` (the lower bound is the version installed)."""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def floors(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    reqs = project["dependencies"] + extras["experiments"] + extras["scale"] + [
        r for r in extras["test"] if r.startswith("transformers")]
    out: dict[str, str] = {}
    for req in reqs:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)", req.strip())
        if m:
            out[m.group(1)] = m.group(3)
    return out


if __name__ == "__main__":
    for name, version in floors().items():
        print(f"{name}=={version}")
    sys.exit(0)
