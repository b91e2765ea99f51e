"""The paper-claims ledger page (book/paper_claims.ipynb), rendered from tests/paper_claims.toml.

Everything the page says about the claims is computed here from the data, so it cannot go stale: the counts by
status and by section, the sections covered, the statuses' meanings (only those in use), and one entry per claim
with links to the cell that shows it (``{ref}`` to the label that ``book/_ext/cell_anchors.py`` gives each
``claim-*`` cell) and to the line of each test that asserts it (``{test-source}``, the role of
``book/_ext/source_links.py``: the repository URL of ``_config.yml`` and the ``#L<n>`` of the test's ``def``,
found with :mod:`ast` when the book is built, so a link never points at a line that moved).
tests/test_claims.py checks that every link target exists.
"""
from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from pathlib import Path, PurePosixPath

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib
    except ImportError:
        from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
LEDGER = ROOT / "tests" / "paper_claims.toml"

STATUS = {  # meaning, sphinx-design badge colour
    "reproduced": ("a test in `tests/` asserts it against gpt2lib and an independent reference", "success"),
    "shown": ("a chapter demonstrates it, usually with an `assert` in the cell that the test suite runs", "info"),
    "cited": ("taken from the paper, not reproducible on this book's hardware or data", "secondary"),
    "pending": ("a later chapter will show it", "warning"),
}


def repository(root: Path = ROOT) -> tuple[str, str]:
    """``repository.url`` and ``repository.branch`` of ``_config.yml``."""
    import yaml

    repo = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))["repository"]
    return repo["url"], repo.get("branch", "main")


def load(path: Path = LEDGER) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def section_key(section: str) -> tuple:
    """The paper's order: the abstract, then §1, §2, §2.1, ... numerically."""
    if not section[0].isdigit():
        return (0, section)
    return (1, *(int(part) for part in section.split(".")))


def section_name(section: str) -> str:
    return section if not section[0].isdigit() else f"§{section}"


def cell_label(claim: dict) -> str:
    """The Sphinx label of the cell that shows the claim (as book/_ext/cell_anchors.py makes it)."""
    return f"{PurePosixPath(claim['chapter']).stem}-{claim['tag']}"


def def_line(node_id: str, root: Path = ROOT) -> int:
    """The line of the ``def`` of the test a pytest node id names ("tests/test_x.py::test_y",
    "tests/test_x.py::TestClass::test_y"; a parametrization "[...]" is ignored), read with :mod:`ast`."""
    path, _, name = node_id.partition("::")
    parts = re.sub(r"\[.*\]$", "", name).split("::")
    file = root / path
    if not parts[-1] or not file.is_file():
        raise ValueError(f"{node_id}: no such test file or no test named (expected tests/test_x.py::test_y)")
    scope = ast.parse(file.read_text(encoding="utf-8"), filename=str(file)).body
    for part in parts:
        found = [n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 and n.name == part]
        if not found:
            raise ValueError(f"{node_id}: {path} defines no {part!r}")
        scope = found[-1].body  # the last definition is the one pytest collects
    return found[-1].lineno


def source_url(node_id: str, repo_url: str, branch: str = "main", root: Path = ROOT) -> str:
    """The line of the test a pytest node id names, in its file on the repository
    (``<repo>/blob/<branch>/tests/test_x.py#L<n>``, ``n`` the line of its ``def``)."""
    return f"{repo_url.rstrip('/')}/blob/{branch}/{node_id.partition('::')[0]}#L{def_line(node_id, root)}"


def shown_name(node_id: str) -> str:
    """What a link to the test shows: its name, without the file ("test_y", "TestClass::test_y")."""
    return node_id.partition("::")[2]


def _inline(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def intro_markdown(claims: list[dict]) -> str:
    """Counts by status and by section, the sections covered and the statuses' meanings."""
    statuses = [s for s in STATUS if any(c["status"] == s for c in claims)]
    sections = sorted({c["section"] for c in claims}, key=section_key)
    by_status = Counter(c["status"] for c in claims)
    counts = Counter((c["section"], c["status"]) for c in claims)
    covered = ", ".join(section_name(s) for s in sections)
    lines = [f"**{len(claims)} claims** from {len(sections)} parts of the paper ({covered}): "
             + ", ".join(f"{by_status[s]} {s}" for s in statuses) + ".", "",
             "| part of the paper | " + " | ".join(statuses) + " | all |",
             "| --- | " + " | ".join("---:" for _ in statuses) + " | ---: |"]
    for sec in sections:
        row = [counts[sec, s] or "" for s in statuses]
        lines.append(f"| {{ref}}`{section_name(sec)} <{section_label(sec)}>` | " + " | ".join(map(str, row))
                     + f" | {sum(counts[sec, s] for s in statuses)} |")
    lines.append("| **all** | " + " | ".join(f"**{by_status[s]}**" for s in statuses) + f" | **{len(claims)}** |")
    lines += ["", "Status:", ""]
    lines += [f"* {{bdg-{STATUS[s][1]}}}`{s}` {STATUS[s][0]}" + (";" if s != statuses[-1] else ".")
              for s in statuses]
    return "\n".join(lines)


def claim_markdown(claim: dict) -> str:
    """One claim: a line with its section, status and id, then its text, where it is shown and what asserts it."""
    status = claim["status"]
    head = (f"{section_name(claim['section'])} {{bdg-{STATUS[status][1]}}}`{status}` "
            f"<small>`{claim['id']}`</small>")
    details = []
    if claim["chapter"]:
        chapter = PurePosixPath(claim["chapter"]).name
        details.append(f"shown in {{ref}}`{chapter}, cell {claim['tag']} <{cell_label(claim)}>`")
    if claim["tests"]:
        details.append("asserted by " + ", ".join(f"{{test-source}}`{node_id}`" for node_id in claim["tests"]))
    body = [f": {_inline(claim['claim'])}"]
    if details:
        body.append(f": {'; '.join(details)}")
    if claim.get("why", "").strip():
        body.append(f": *Why not (fully) reproduced:* {_inline(claim['why'])}")
    return "\n".join([head, *body])


def section_label(section: str) -> str:
    """The link target of a part of the paper on the ledger page ("2.3" -> "ledger-2-3")."""
    return "ledger-" + re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")


def claims_markdown(claims: list[dict]) -> str:
    """Every claim, in the paper's order, as one definition-list entry each; each part of the paper starts with a
    link target (:func:`section_label`) that the counts table links to."""
    ordered = sorted(claims, key=lambda c: section_key(c["section"]))  # stable: the file's order within a part
    blocks, current = [], None
    for c in ordered:
        if c["section"] != current:
            current = c["section"]
            blocks.append(f"({section_label(current)})=\n**{section_name(current)}**")
        blocks.append(claim_markdown(c))
    return "\n\n".join(blocks)


def links(claims: list[dict], repo_url: str, branch: str = "main") -> tuple[set[str], set[str]]:
    """The cell labels and the test-source URLs the page links to."""
    labels = {cell_label(c) for c in claims if c["chapter"]}
    urls = {source_url(t, repo_url, branch) for c in claims for t in c["tests"]}
    return labels, urls
