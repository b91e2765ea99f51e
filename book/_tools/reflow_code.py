"""Reflow the code lines of the chapters that are wider than the book's content column (LIMIT characters).

``python book/_tools/reflow_code.py --write book/*.ipynb`` rewrites, in each notebook, only the statements that
hold a long line (without ``--write`` it prints the new cells): black re-formats them (long strings split by its
string_processing), a long trailing comment moves above its line, a long comment line is wrapped. The cell's AST
must come out unchanged, so the code means the same; outputs, ids, tags and metadata are kept. Lines it cannot
shorten are listed (LEFT) for a hand edit. Needs ``pip install black``. tests/test_book.py checks the limit; the
browser check measures the rendered page.
"""
import ast
import io
import re
import sys
import textwrap
import tokenize

import nbformat

LIMIT = 88  # characters of a code line that fit the content column at 1280 px (12 px monospace, gpt2book.css)

def mode(width):
    import black
    from black.mode import Preview

    return black.Mode(line_length=width, string_normalization=False, preview=True,
                      enabled_features={Preview.string_processing})

def stmt_span(tree, lineno):
    best = None
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and node.lineno <= lineno <= node.end_lineno:
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            if best is None or node.end_lineno - start < best[1] - best[0]:
                best = (start, node.end_lineno)
    return best

def comment_of(line):
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(line + "\n").readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    for t in toks:
        if t.type == tokenize.COMMENT:
            return t.start[1]
    return None

def wrap_comment(line, width):
    col = comment_of(line)
    if col is None:
        return None
    code, comment = line[:col].rstrip(), line[col:].lstrip("#").strip()
    indent = re.match(r"\s*", line).group()
    if code.strip():  # trailing comment: move it above its line
        lines = textwrap.wrap(comment, width - len(indent) - 2)
        return [f"{indent}# {l}" for l in lines] + [code]
    return [f"{indent}# {l}" for l in textwrap.wrap(comment, width - len(indent) - 2)]

def reflow(src, limit=LIMIT):
    if not any(len(l) > limit for l in src.splitlines()):
        return src, []
    try:
        before = ast.dump(ast.parse(src))
    except SyntaxError:
        return src, ["magic or syntax: not parsed"]
    lines = src.split("\n")
    stuck = set()
    for _ in range(200):
        long = [i for i, l in enumerate(lines) if len(l) > limit and i not in stuck]
        if not long:
            break
        i = long[0]
        text = "\n".join(lines)
        tree = ast.parse(text)
        span = stmt_span(tree, i + 1)
        new = None
        col = comment_of(lines[i])
        if col is not None and lines[i][:col].strip() and len(lines[i][:col].rstrip()) <= limit:
            w = wrap_comment(lines[i], limit)
            cand = lines[:i] + w + lines[i + 1:]
            if ast.dump(ast.parse("\n".join(cand))) == before:
                lines = cand
                continue
        if span and lines[i].strip() and not lines[i].lstrip().startswith("#"):
            a, b = span[0] - 1, span[1]
            chunk = lines[a:b]
            indent = re.match(r"\s*", chunk[0]).group()
            if all(not l.strip() or l.startswith(indent) for l in chunk):
                body = "\n".join(l[len(indent):] for l in chunk) + "\n"
                try:
                    import black

                    out = black.format_str(body, mode=mode(limit - len(indent))).rstrip("\n").split("\n")
                    cand = lines[:a] + [indent + l if l.strip() else l for l in out] + lines[b:]
                    if ast.dump(ast.parse("\n".join(cand))) == before and cand != lines:
                        new = cand
                except Exception:
                    pass
        if new is not None and max(len(l) for l in new[a:a + len(new) - len(lines) + (b - a)] or [0]) <= limit:
            lines = new
            continue
        if new is not None:
            lines = new  # black helped but a line is still long: try its comment next
            continue
        w = wrap_comment(lines[i], limit)
        if w is not None:
            cand = lines[:i] + w + lines[i + 1:]
            if ast.dump(ast.parse("\n".join(cand))) == before:
                lines = cand
                continue
        stuck.add(i)
    out = "\n".join(lines)
    assert ast.dump(ast.parse(out)) == before
    return out, [l for l in lines if len(l) > limit]

def _read(path: str, parser):
    """The notebook at ``path``, or a one-line usage error naming what is wrong with it."""
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except (OSError, UnicodeDecodeError) as e:
        parser.error(f"{path} cannot be read: {e.strerror if isinstance(e, OSError) else e}")
    except (ValueError, TypeError, KeyError, AttributeError, nbformat.ValidationError) as e:
        parser.error(f"{path} is not a Jupyter notebook: {' '.join(str(e).split())[:200]}")
    return nb


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", help="the chapters to reflow (book/*.ipynb)")
    parser.add_argument("--write", action="store_true", help="rewrite the notebooks (else print the new cells)")
    args = parser.parse_args(argv)
    books = [(path, _read(path, parser)) for path in args.notebooks]  # all checked before any is written
    for path, nb in books:
        changed = 0
        for c in nb.cells:
            if c.cell_type != "code" or "setup" in c.metadata.get("tags", []):
                continue
            new, left = reflow(c.source)
            if new != c.source:
                changed += 1
                if not args.write:
                    print(f"--- {path} {c.get('id')}\n{new}\n")
                c.source = new
            for l in left:
                print(f"LEFT {path} {c.get('id')}: {l}")
        if args.write and changed:
            nbformat.write(nb, path)
        print(f"{path}: {changed} cells reflowed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
