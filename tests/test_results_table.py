"""Number formats of the results table (gpt2lib.evaluate.results_table): one fixed-point format per
column at every magnitude, never scientific notation beside plain numbers; the paper's numbers as
Table 3 of Radford et al. (2019) prints them."""
from __future__ import annotations

import re
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lib.evaluate import (
    METRIC_UNITS, PAPER_TABLE3, PAPER_TEXT_RESULTS, TaskResult, format_number, format_paper_number, results_table,
)

FIXED_2 = re.compile(r"-?\d{1,3}(,\d{3})*\.\d\d")  # 30,469.12
COUNT = re.compile(r"\d{1,3}(,\d{3})*")  # 245,569
PAPER = re.compile(r"\d{1,3}(,\d{3})*\.\d{2,3}")  # 75.20, 44.575

# values from 1e-6 to 1e12: bits per byte, accuracies, perplexities of an untrained model
magnitudes = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
METRICS = ["ppl", "bpb", "acc", "bleu", "tokens", "words"]


def _rows(table: str) -> list[list[str]]:
    """The body rows of a markdown table, as lists of stripped cells."""
    lines = [ln for ln in table.splitlines() if ln.startswith("| ")][2:]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def _value(cell: str) -> Decimal:
    return Decimal(cell.replace(",", ""))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["wikitext2", "ptb", "lambada", "winograd", "nq"]),
                          st.dictionaries(st.sampled_from(METRICS), magnitudes, min_size=1)), min_size=1, max_size=6))
def test_every_cell_of_our_column_has_one_format(runs) -> None:
    """Whatever the magnitudes, each 'ours' cell is fixed point with thousands separators and two decimals
    (counts: none) and reads back as the value it shows, rounded; the paper columns likewise."""
    results = [TaskResult(task, metrics, 10) for task, metrics in runs]
    rows = _rows(results_table(results))
    expected = [(r.task, m, v) for r in results for m, v in r.metrics.items()]
    assert len(rows) == len(expected)
    for row, (task, metric, value) in zip(rows, expected):
        assert row[:2] == [task, metric]
        shown = row[2]
        assert "e" not in shown.lower()
        if METRIC_UNITS.get(metric) == "count":
            assert COUNT.fullmatch(shown), shown
            assert abs(_value(shown) - Decimal(value)) <= Decimal("0.5")
        else:
            assert FIXED_2.fullmatch(shown), shown
            assert abs(_value(shown) - Decimal(value)) <= Decimal("0.005")
        for cell in row[6:10]:
            assert cell == "-" or PAPER.fullmatch(cell), cell


def test_the_paper_columns_quote_every_printed_digit() -> None:
    """Each paper cell equals the number of PAPER_TABLE3 / PAPER_TEXT_RESULTS exactly, with at least two
    decimals (Table 3 prints 75.20, 15.60) and no decimal dropped (44.575)."""
    ours = {"lambada/acc": "lambada/acc_stopword_filter"}  # the metric Table 3's LAMBADA accuracy sits beside
    keys = [ours.get(k, k).split("/") for k in [*PAPER_TABLE3, *PAPER_TEXT_RESULTS]]
    rows = {(r[0], r[1]): r[6:10] for r in _rows(results_table([TaskResult(t, {m: 1.0}, 1) for t, m in keys]))}
    for key, by_size in PAPER_TABLE3.items():
        cells = rows[tuple(ours.get(key, key).split("/"))]
        for cell, size in zip(cells, ["117M", "345M", "762M", "1542M"]):
            assert PAPER.fullmatch(cell) and float(_value(cell)) == by_size[size], (key, cell)
    assert rows[("wikitext2", "ppl")] == ["29.41", "22.76", "19.93", "18.34"]
    assert rows[("1bw", "ppl")] == ["75.20", "55.72", "44.575", "42.16"]
    assert rows[("winograd", "acc")] == ["-", "-", "-", "70.70"]
    assert [format_paper_number(v) for v in (88.0, 5, 11.5, 0.93)] == ["88.00", "5.00", "11.50", "0.93"]


@given(magnitudes, st.integers(0, 4))
def test_format_number_is_fixed_point_at_every_magnitude(value, decimals) -> None:
    shown = format_number(value, decimals)
    assert re.fullmatch(r"\d{1,3}(,\d{3})*" + (rf"\.\d{{{decimals}}}" if decimals else ""), shown), shown
    assert abs(_value(shown) - Decimal(value)) <= Decimal(5) / 10 ** (decimals + 1)


def test_format_number_names_what_is_not_a_number() -> None:
    assert format_number(float("nan")) == "nan"
    assert format_number(float("inf")) == "inf" and format_number(float("-inf")) == "-inf"
    assert format_number(30469.3) == "30,469.30" and format_number(9033.0) == "9,033.00"
