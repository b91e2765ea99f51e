"""The paper-claim ledger (tests/paper_claims.toml) and the claims it says are tested here.

Two kinds of tests:

* the ledger is sound: every claim names a known status, every referenced test exists, every referenced chapter
  and cell tag exists, and "cited"/"pending" claims say why;
* claims of GPT-2 §1-§2.3 (and Table 2/3) checked against gpt2lib and independent references (transformers,
  tiktoken, the released vocab.bpe file, the paper's own table).
"""
from __future__ import annotations

import ast
import math
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEDGER = ROOT / "tests" / "paper_claims.toml"
STATUSES = {"reproduced", "shown", "cited", "pending"}
REQUIRED = ("id", "section", "claim", "status", "chapter", "tag", "tests")


def load_ledger(path: Path = LEDGER) -> dict:
    """Parse the ledger (tomllib on Python >= 3.11, tomli or pip's vendored copy on 3.10)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            from pip._vendor import tomli as tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


LEDGER_DATA = load_ledger()
CLAIMS = LEDGER_DATA["claim"]


def _test_functions(path: Path) -> set[str]:
    """'name' and 'Class::name' of every test function defined in a Python file (found with ast)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(f"{node.name}::{item.name}")
    return names


def _cell_tags(notebook: Path) -> set[str]:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    return {tag for cell in nb.cells for tag in cell.metadata.get("tags", [])}


# --------------------------------------------------------------------------------------------------
# The ledger is sound


def test_ledger_claims_have_all_fields_a_known_status_and_unique_ids():
    """Every claim has the required fields and a known status; ids are unique."""
    ids = [c.get("id") for c in CLAIMS]
    assert len(ids) == len(set(ids)), f"duplicate claim ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    for c in CLAIMS:
        missing = [k for k in REQUIRED if k not in c]
        assert not missing, f"claim {c.get('id')!r} lacks {missing}"
        assert c["status"] in STATUSES, f"claim {c['id']!r}: unknown status {c['status']!r}"
        assert re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", c["id"]), f"claim id {c['id']!r} is not kebab-case"


def test_claims_without_a_test_say_why():
    """A claim that no test asserts (or that is cited/pending) explains why in `why`."""
    for c in CLAIMS:
        if c["status"] in {"cited", "pending"} or not c["tests"]:
            assert c.get("why", "").strip(), f"claim {c['id']!r} needs a 'why'"
        if c["status"] == "reproduced":
            assert c["tests"], f"claim {c['id']!r} is 'reproduced' but names no test"


@pytest.mark.parametrize("claim", CLAIMS, ids=[c["id"] for c in CLAIMS])
def test_every_referenced_test_exists(claim):
    """Each node id in `tests` names a test file in tests/ and a test function defined in it."""
    for node_id in claim["tests"]:
        file, _, name = node_id.partition("::")
        assert file.startswith("tests/") and name, f"{claim['id']}: {node_id!r} is not 'tests/<file>.py::<test>'"
        path = ROOT / file
        assert path.is_file(), f"{claim['id']}: test file {file} does not exist"
        name = re.sub(r"\[.*\]$", "", name)  # a parametrized id names its function
        assert name in _test_functions(path), f"{claim['id']}: {file} defines no test {name!r}"


@pytest.mark.parametrize("claim", CLAIMS, ids=[c["id"] for c in CLAIMS])
def test_every_referenced_chapter_and_tag_exists(claim):
    """A claim's chapter is a notebook of the book, listed in _toc.yml, with a cell carrying the claim's tag."""
    if not claim["chapter"]:
        assert claim["status"] in {"cited", "pending"}, f"{claim['id']}: only cited/pending claims may lack a chapter"
        return
    notebook = ROOT / claim["chapter"]
    assert notebook.is_file(), f"{claim['id']}: chapter {claim['chapter']} does not exist"
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    assert f"file: {claim['chapter'].removesuffix('.ipynb')}" in toc, f"{claim['chapter']} is not in _toc.yml"
    assert claim["tag"], f"{claim['id']}: a claim with a chapter needs the tag of the cell that shows it"
    assert claim["tag"] in _cell_tags(notebook), f"{claim['id']}: no cell of {claim['chapter']} is tagged {claim['tag']!r}"


# --------------------------------------------------------------------------------------------------
# Table 3 (typed from the paper) supports what the abstract says about it

TABLE3 = LEDGER_DATA["table3"]


def test_table3_is_complete():
    """Table 3 has 10 columns, each with a SOTA number and one number per model size."""
    assert len(TABLE3["sizes"]) == len(TABLE3["params_millions"]) == 4
    assert len(TABLE3["column"]) == 10
    for col in TABLE3["column"]:
        assert col["better"] in {"lower", "higher"}
        assert len(col["gpt2"]) == 4 and all(v > 0 for v in col["gpt2"])


def _beats(col: dict, value: float) -> bool:
    return value < col["sota"] if col["better"] == "lower" else value > col["sota"]


def test_table3_state_of_the_art_on_7_of_8_datasets():
    """Abstract: the 1.5B model is state of the art on 7 of the 8 datasets (all but the One Billion Word benchmark)."""
    datasets: dict[str, list[bool]] = {}
    for col in TABLE3["column"]:
        name = col["dataset"].split("-")[0]  # CBT-CN and CBT-NE are two columns of one dataset (CBT)
        datasets.setdefault(name, []).append(_beats(col, col["gpt2"][-1]))
    wins = sorted(name for name, results in datasets.items() if all(results))
    assert len(datasets) == 8
    assert len(wins) == 7, wins
    assert set(datasets) - set(wins) == {"1BW"}


def test_table3_every_task_improves_from_smallest_to_largest():
    """Abstract: more capacity helps on every task: the largest model beats the smallest on every column,
    and on average each doubling of parameters improves the score (log-linear trend)."""
    for col in TABLE3["column"]:
        first, last = col["gpt2"][0], col["gpt2"][-1]
        assert (last < first) if col["better"] == "lower" else (last > first), col["dataset"]
        # least-squares slope of the score against log(params): negative for lower-is-better columns
        xs = [math.log(p) for p in TABLE3["params_millions"]]
        ys = col["gpt2"]
        mx, my = sum(xs) / 4, sum(ys) / 4
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        assert (slope < 0) if col["better"] == "lower" else (slope > 0), col["dataset"]


# --------------------------------------------------------------------------------------------------
# §2.3 and Table 2 against gpt2lib, with transformers as the independent reference

TABLE2 = LEDGER_DATA["table2"]["row"]


@pytest.mark.parametrize("row", TABLE2, ids=[r["name"] for r in TABLE2])
def test_table2_exact_parameter_counts(row):
    """Table 2: each size has the stated layers and width, and gpt2lib builds exactly as many parameters as the
    Hugging Face reference (tied head counted once); the count rounds to the size the paper states, or (for the
    three larger models) lies within 3% of it."""
    import torch
    import transformers

    from gpt2lib.model import GPT2, GPT2Config

    config = GPT2Config.from_name(row["name"])
    assert (config.n_layer, config.n_embd) == (row["layers"], row["d_model"])
    with torch.device("meta"):
        ours = GPT2(config).num_parameters()
        ref_config = transformers.GPT2Config(n_layer=row["layers"], n_embd=row["d_model"],
                                             n_head=config.n_head, n_positions=1024, vocab_size=50257)
        ref = sum(p.numel() for p in transformers.GPT2LMHeadModel(ref_config).parameters())
    assert ours == ref == row["parameters_exact"]
    stated = int(row["parameters_stated"].rstrip("M")) * 1_000_000
    assert abs(ours - stated) / stated < 0.07  # 117M vs 124.4M is the largest gap (6.4%)


def test_context_is_1024_tokens_for_all_four_sizes():
    """§2.3: context 1024 tokens (GPT had 512) in all four sizes, as in the reference configuration."""
    import transformers

    from gpt2lib.model import GPT2Config

    for row in TABLE2:
        assert GPT2Config.from_name(row["name"]).block_size == 1024 == transformers.GPT2Config().n_positions


def test_block_normalizes_the_input_of_each_sub_block():
    """§2.3 pre-LN: in each block, attention sees ln_1(x) and the MLP sees ln_2(x + attn), and both add into the
    residual stream, which is never normalized itself."""
    import torch

    from gpt2lib.model import Block, GPT2Config

    torch.manual_seed(0)
    block = Block(GPT2Config.from_name("gpt2-tiny", vocab_size=64)).eval()
    x = torch.randn(2, 5, block.ln_1.normalized_shape[0])
    seen = {}
    block.attn.register_forward_hook(lambda m, a, out: seen.update(attn_in=a[0], attn_out=out))
    block.mlp.register_forward_hook(lambda m, a, out: seen.update(mlp_in=a[0], mlp_out=out))
    with torch.no_grad():
        y = block(x)
        torch.testing.assert_close(seen["attn_in"], torch.nn.functional.layer_norm(
            x, x.shape[-1:], block.ln_1.weight, block.ln_1.bias, block.ln_1.eps))
        h = x + seen["attn_out"]
        torch.testing.assert_close(seen["mlp_in"], block.ln_2(h))
        torch.testing.assert_close(y, h + seen["mlp_out"])


def test_final_layer_norm_precedes_the_lm_head():
    """§2.3: an extra LayerNorm (ln_f) sits after the last block; the LM head reads its output."""
    import torch

    from gpt2lib.model import GPT2, GPT2Config

    torch.manual_seed(0)
    model = GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=64)).eval()
    seen = {}
    model.transformer.h[-1].register_forward_hook(lambda m, a, out: seen.update(last_block=out))
    model.lm_head.register_forward_hook(lambda m, a, out: seen.update(head_in=a[0]))
    with torch.no_grad():
        logits, _ = model(torch.randint(0, 64, (1, 7)))
    torch.testing.assert_close(seen["head_in"], model.transformer.ln_f(seen["last_block"]))
    torch.testing.assert_close(logits, seen["head_in"] @ model.transformer.wte.weight.T)


def test_residual_projections_start_scaled_by_one_over_sqrt_n():
    """§2.3: the residual projections (attn.c_proj, mlp.c_proj) start with std 0.02/sqrt(N), N = 2 * n_layer
    residual layers; the other weights with std 0.02."""
    import torch

    from gpt2lib.model import GPT2, GPT2Config

    torch.manual_seed(0)
    config = GPT2Config.from_name("gpt2-mini", vocab_size=512)
    model = GPT2(config)
    n = 2 * config.n_layer
    for block in model.transformer.h:
        for proj in (block.attn.c_proj, block.mlp.c_proj):
            assert proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(n), rel=0.05)
        assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)


# --------------------------------------------------------------------------------------------------
# §2.2 input representation, against tiktoken and the released vocab.bpe


def test_vocabulary_is_50257_bytes_plus_merges_plus_eot(data_mirror):
    """§2.3: 50,257 tokens = 256 byte tokens + 50,000 merges (lines of the released vocab.bpe) + <|endoftext|>."""
    import tiktoken

    from gpt2lib.model import GPT2Config
    from gpt2lib.tokenizer import get_gpt2_tokenizer

    merges = (data_mirror / "gpt2" / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]
    merges = [m for m in merges if m.strip()]
    assert len(merges) == 50_000
    reference = tiktoken.get_encoding("gpt2")
    tok = get_gpt2_tokenizer()
    assert 256 + len(merges) + 1 == reference.n_vocab == tok.n_vocab == GPT2Config().vocab_size == 50257
    assert tok.eot == reference.eot_token == 50256


def test_pretokenizer_separates_letters_from_punctuation_and_keeps_leading_space():
    """§2.2: no merge crosses a character category ("dog." is "dog" + "."), a space stays glued to the word after it,
    exactly as the released encoder's regex (openai/gpt-2 src/encoder.py, typed here as the reference) splits."""
    import regex

    from gpt2lib.bpe import GPT2_SPLIT_PATTERN

    released = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    ours = regex.compile(GPT2_SPLIT_PATTERN)
    text = "My dog. Your dog! Their dog? It's 2019, isn't it?  Yes:\tdogs' 42dogs"
    assert ours.findall(text) == released.findall(text)
    assert ours.findall("dog. dog! dog?") == ["dog", ".", " dog", "!", " dog", "?"]


def test_byte_level_base_vocabulary_is_256_and_covers_any_string():
    """§2.2: with no merges, byte-level BPE has 256 base tokens (+ <|endoftext|>), the byte<->unicode map is a
    bijection onto printable characters, and every Unicode string (emoji, CJK, controls, lone surrogates are not
    text) encodes to base tokens and decodes back exactly."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gpt2lib.bpe import BytePairTokenizer, bytes_to_unicode

    mapping = bytes_to_unicode()
    assert sorted(mapping) == list(range(256))
    assert len(set(mapping.values())) == 256 and all(ch.isprintable() and not ch.isspace() for ch in mapping.values())
    tok = BytePairTokenizer()
    assert tok.n_vocab == 257 and tok.eot == 256

    @settings(max_examples=60, deadline=None)
    @given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
    def roundtrip(text):
        ids = tok.encode(text)
        assert all(0 <= i < 256 for i in ids) and len(ids) == len(text.encode("utf-8"))
        assert tok.decode(ids) == text

    roundtrip()
    assert tok.decode(tok.encode("日本語 🐕 dog\u0000\x7f")) == "日本語 🐕 dog\u0000\x7f"


# --------------------------------------------------------------------------------------------------
# The ledger page (book/_tools/ledger.py) links only to targets that exist


def test_ledger_page_links_to_tagged_cells_and_test_sources_that_exist():
    """Each cell link is the label book/_ext/cell_anchors.py gives a claim-tagged cell of that chapter; each test
    link is the repository's blob URL of a test file that exists, at a line; the counts at the top are the data's."""
    import collections

    import nbformat

    sys.path.insert(0, str(ROOT / "book"))
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    import cell_anchors
    from _tools import ledger

    url, branch = ledger.repository()
    labels, urls = ledger.links(CLAIMS, url, branch)
    existing = set()
    for nb_path in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in nbformat.read(nb_path, as_version=4).cells:
            existing |= {cell_anchors.label(nb_path.name, t) for t in cell.metadata.get("tags", [])
                         if t.startswith("claim-")}
    assert labels and labels <= existing, f"links to cells that do not exist: {sorted(labels - existing)}"
    prefix = f"{url}/blob/{branch}/"
    for u in urls:
        assert u.startswith(prefix) and (ROOT / u.removeprefix(prefix).partition("#")[0]).is_file(), u
    page = ledger.claims_markdown(CLAIMS)
    assert len(re.findall(r"\{ref\}`[^`]+<([^>]+)>`", page)) == sum(bool(c["chapter"]) for c in CLAIMS)
    assert set(re.findall(r"\{ref\}`[^`]+<([^>]+)>`", page)) == labels
    intro = ledger.intro_markdown(CLAIMS)
    by_status = collections.Counter(c["status"] for c in CLAIMS)
    assert f"**{len(CLAIMS)} claims**" in intro
    assert all(f"{n} {status}" in intro for status, n in by_status.items())
    assert "pending" not in intro or by_status["pending"]  # only the statuses in use are defined


def _ledger_modules():
    sys.path.insert(0, str(ROOT / "book"))
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    import source_links
    from _tools import ledger

    return ledger, source_links


def test_every_test_link_points_at_the_line_of_the_def_it_names():
    """Each test the ledger names links to ``<file>#L<n>`` where line n of the file, read as plain text, is the
    ``def`` of that test; the page names every test of the ledger with the {test-source} role, and nothing else."""
    ledger, _ = _ledger_modules()
    url, branch = ledger.repository()
    node_ids = [t for c in CLAIMS for t in c["tests"]]
    assert node_ids
    for node_id in node_ids:
        link = ledger.source_url(node_id, url, branch)
        m = re.fullmatch(re.escape(f"{url}/blob/{branch}/") + r"(tests/[\w/]+\.py)#L(\d+)", link)
        assert m, link
        lines = (ROOT / m.group(1)).read_text(encoding="utf-8").splitlines()
        name = node_id.rpartition("::")[2]
        assert re.match(rf"\s*(async\s+)?def {name}\(", lines[int(m.group(2)) - 1]), (
            f"{link}: line {m.group(2)} is {lines[int(m.group(2)) - 1]!r}, not the def of {name}")
    page = ledger.claims_markdown(CLAIMS)
    assert re.findall(r"\{test-source\}`([^`]+)`", page) == [
        t for c in sorted(CLAIMS, key=lambda c: ledger.section_key(c["section"])) for t in c["tests"]]
    assert "/blob/" not in page  # no link to a whole file is left


def test_def_line_finds_functions_methods_and_parametrized_tests(tmp_path):
    ledger, _ = _ledger_modules()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(
        "import pytest\n\n\ndef helper():\n    pass\n\n\n@pytest.mark.parametrize('n', [1, 2])\n"
        "def test_a(n):\n    assert n\n\n\nclass TestB:\n    def test_c(self):\n        pass\n", encoding="utf-8")
    assert ledger.def_line("tests/test_x.py::test_a", tmp_path) == 9  # the def, not its decorator (line 8)
    assert ledger.def_line("tests/test_x.py::test_a[2]", tmp_path) == 9
    assert ledger.def_line("tests/test_x.py::TestB::test_c", tmp_path) == 14
    with pytest.raises(ValueError, match="defines no 'test_gone'"):
        ledger.def_line("tests/test_x.py::test_gone", tmp_path)
    with pytest.raises(ValueError, match="no such test file"):
        ledger.def_line("tests/test_missing.py::test_a", tmp_path)


def test_the_test_source_role_links_the_name_to_its_line_and_flags_a_missing_test():
    """The Sphinx role the page uses, run by docutils: a link showing the test's name, to the line of its def; a
    test that does not exist is a warning (which fails the -W build), not a link to nowhere."""
    from docutils import nodes
    from docutils.core import publish_doctree
    from docutils.parsers.rst import roles

    ledger, source_links = _ledger_modules()
    roles.register_local_role("test-source", source_links.source_role)
    node_id = CLAIMS[[bool(c["tests"]) for c in CLAIMS].index(True)]["tests"][0]
    doc = publish_doctree(f"asserted by :test-source:`{node_id}`", settings_overrides={"report_level": 5})
    (ref,) = list(doc.findall(nodes.reference))
    assert ref["refuri"] == ledger.source_url(node_id, *ledger.repository())
    assert ref.astext() == node_id.partition("::")[2]
    bad = publish_doctree(":test-source:`tests/test_claims.py::test_no_such_test`",
                          settings_overrides={"report_level": 5, "halt_level": 5})
    assert not list(bad.findall(nodes.reference))
    warnings = [m.astext() for m in bad.findall(nodes.system_message)]
    assert any("defines no 'test_no_such_test'" in w for w in warnings), warnings
