"""Sphinx extension of the GPT-2 book: a link target on every code cell tagged ``claim-*``.

myst-nb renders a cell's tags as classes of its container (``tag_claim-table2``). This transform gives each such
container the HTML id and the Sphinx label ``<chapter>-<tag>`` (e.g. ``model-claim-table2``), so the paper-claims
ledger links to the exact cell that shows a claim with ``{ref}`text <model-claim-table2>```; a missing cell is
an "undefined label" warning, which fails the ``-W`` build.
"""
from __future__ import annotations

from pathlib import PurePosixPath

from docutils import nodes
from sphinx.transforms import SphinxTransform

PREFIX = "tag_claim-"


def label(chapter: str, tag: str) -> str:
    """The label of the cell of ``chapter`` ("book/model.ipynb" or "model") tagged ``tag``."""
    return f"{PurePosixPath(chapter).stem}-{tag}"


class ClaimCellAnchors(SphinxTransform):
    default_priority = 500

    def apply(self) -> None:
        for node in self.document.findall(nodes.container):
            for cls in node.get("classes", []):
                if cls.startswith(PREFIX):
                    name = label(self.env.docname, cls.removeprefix("tag_"))
                    if name not in self.document.nameids:
                        node["names"].append(name)
                        self.document.note_explicit_target(node)


def setup(app):
    app.add_transform(ClaimCellAnchors)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
