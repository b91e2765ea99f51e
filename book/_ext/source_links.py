"""Sphinx extension of the GPT-2 book: the role ``{test-source}`tests/test_x.py::test_y``` links to the line of that
test's ``def`` in the repository.

The paper-claims ledger (book/_tools/ledger.py) names the tests that assert each claim with this role. The URL is
made when the book is built: the repository of ``_config.yml`` and ``#L<n>``, ``n`` found with :mod:`ast` in the
test file as it is then, so a link never points at a line that moved. A test that does not exist is a warning,
which fails the ``-W`` build.
"""
from __future__ import annotations

import sys
from pathlib import Path

from docutils import nodes

BOOK = Path(__file__).resolve().parents[1]


def _ledger():
    if str(BOOK) not in sys.path:
        sys.path.insert(0, str(BOOK))
    from _tools import ledger

    return ledger


def source_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``{test-source}`tests/test_x.py::test_y``` -> a link, shown as ``test_y``, to the line of its ``def``."""
    ledger = _ledger()
    try:
        url = ledger.source_url(text, *ledger.repository())
    except ValueError as e:
        msg = inliner.reporter.warning(f"test-source: {e}", line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    shown = ledger.shown_name(text)
    link = nodes.reference(rawtext, "", refuri=url, classes=["test-source"])
    link += nodes.literal(shown, shown)
    return [link], []


def setup(app):
    app.add_role("test-source", source_role)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
