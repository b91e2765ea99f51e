"""Sphinx extension of the GPT-2 book: an author-year bibliography (pybtex style ``gpt2book``).

sphinxcontrib-bibtex's default style labels entries alpha-style (``[Kar22]``) and puts titles in sentence case
("Nanogpt"). This style, selected by ``bibtex_default_style: gpt2book`` in _config.yml, labels each entry as the
text cites it (``Radford et al., 2019``), sorts by author and year, keeps titles as written in references.bib, and
writes a trailing ``others`` author as "et al.".
"""
from __future__ import annotations

import string

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.template import FieldIsMissing, field, join, node, sentence


def _people(entry, role: str | None = None) -> tuple[list, bool]:
    """The persons of ``role`` (by default the authors, else the editors) without a trailing "others", and whether
    there was one."""
    if role is None:
        persons = list(entry.persons.get("author") or entry.persons.get("editor") or [])
    else:
        persons = list(entry.persons.get(role, []))
    others = bool(persons) and str(persons[-1]) == "others"
    return (persons[:-1] if others else persons), others


def _last(person) -> str:
    return Text.from_latex(" ".join(person.prelast_names + person.last_names)).render_as("text")


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        labels = []
        for entry in sorted_entries:
            persons, others = _people(entry)
            if not persons:
                who = Text.from_latex(entry.fields.get("organization", entry.key)).render_as("text")
            elif len(persons) >= 3 or others:
                who = f"{_last(persons[0])} et al."
            else:
                who = " and ".join(_last(p) for p in persons)
            labels.append(f"{who}, {entry.fields.get('year', 'n.d.')}")
        seen: dict[str, int] = {}
        for label in labels:  # the same authors and year twice: 2022a, 2022b
            seen[label] = seen.get(label, 0) + 1
        suffix: dict[str, int] = {}
        for label in labels:
            if seen[label] > 1:
                suffix[label] = suffix.get(label, -1) + 1
                yield label + string.ascii_lowercase[suffix[label]]
            else:
                yield label


@node
def names_et_al(children, context, role, **kwargs):
    """Like pybtex's ``names``, with a trailing "others" written as "et al."."""
    if role not in context["entry"].persons:
        raise FieldIsMissing(role, context["entry"])  # as pybtex's names: optional[...] leaves it out
    persons, others = _people(context["entry"], role)
    style = context["style"]
    formatted = [style.format_name(person, style.abbreviate_names) for person in persons]
    if others:
        return join(sep=", ")[formatted].format_data(context) + Text(" et al.")
    return join(**kwargs)[formatted].format_data(context)


class Style(UnsrtStyle):
    default_label_style = AuthorYearLabels
    default_sorting_style = "author_year_title"

    def format_names(self, role, as_sentence=True):
        formatted = names_et_al(role, sep=", ", sep2=" and ", last_sep=", and ")
        return sentence[formatted] if as_sentence else formatted

    def format_title(self, e, which, as_sentence=True):
        title = field(which)  # as written: "nanoGPT", "GPT-2 (124M)"
        return sentence[title] if as_sentence else title


register_plugin("pybtex.style.formatting", "gpt2book", Style)


def setup(app):
    return {"parallel_read_safe": True, "parallel_write_safe": True}
