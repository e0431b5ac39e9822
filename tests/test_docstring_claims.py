"""Every "Used in chapter N" in a docstring of ``helpers`` is true.

**The rule.** A function, class or method of ``helpers`` whose docstring says
it is used in a chapter must be *named in that chapter's page*: its name is an
identifier in one of the page's code cells (a name, an attribute as in
``M.fourier_basis``, or an imported name; hidden cells and f-strings included;
comments, prose and other strings do not count). A recipe (a function
registered with ``@recipe(name)`` of :mod:`helpers.store`) also counts as named
when a code cell has its checkpoint name as a string, or a module-level
constant of the recipe's module that holds it (``store.load("induction_2l")``,
``store.train_or_load(LOOKUP_MODEL)``). Being called by another helper that the page uses is
*not* enough: the claim tells a reader where to see the function at work.

The claims read are the sentences (case-insensitive, line breaks ignored)

* ``Used in chapter 3`` (what follows, e.g. ``(the exercise)``, is ignored),
* ``Used in chapters 3 and 4``, ``Used in chapters 5, 7 and 8``,
* ``... reused in chapters 5, 7 and 8`` / ``... and in chapter 5``,
* ``Used in every chapter`` / ``Used throughout the book``: every chapter page
  (``book/NN_*.md`` with NN >= 01) that exists.

Chapter N's page is ``book/0N_*.md`` (``book/NN_*.md``); chapter 0 is
``book/how_to_use.md``. A claim about a chapter that has no page yet is false:
write it when the page lands. Module docstrings are not checked (they say which
chapters a module serves, which may be through other modules). A helper used by
no page says so: "Not used by a page; a library helper."
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
HELPERS = ROOT / "helpers"

_NUM_LIST = r"\d+(?:\s*,\s*\d+)*(?:\s*,?\s*(?:and|or)\s+\d+)?"
_CLAIM = re.compile(
    r"\b(?:re)?used\s+(?:in|by)\s+(?:"
    rf"chapters?\s+(?P<nums>{_NUM_LIST})"
    r"(?:\s*(?:;|\(|,)?\s*(?:and\s+)?(?:re)?(?:used\s+)?(?:also\s+)?in\s+chapters?\s+(?P<more>" + _NUM_LIST + r"))?"
    r"|(?P<every>every\s+chapter\b(?!\s+that))"
    r")"
    r"|\bused\s+throughout\s+the\s+book\b(?P<book>)",
    re.IGNORECASE,
)
_NOT_USED = re.compile(r"not\s+used\s+by\s+a\s+page", re.IGNORECASE)


@dataclass(frozen=True)
class Claim:
    """One docstring's claim: ``where`` (path:line qualname) says ``name`` is used in ``chapters``."""

    where: str
    module: str
    qualname: str
    name: str
    chapters: tuple[int, ...]


def chapters_in(docstring: str, every: tuple[int, ...]) -> tuple[int, ...] | None:
    """The chapters a docstring claims its object is used in, or None if it makes no claim.

    >>> chapters_in("Used in chapter 4; reused in chapters 5, 7 and 8.", (1, 2))
    (4, 5, 7, 8)
    >>> chapters_in("Used in chapters 2 and 3 (the SVD).", (1, 2))
    (2, 3)
    >>> chapters_in("Used in every chapter.", (1, 2, 3))
    (1, 2, 3)
    >>> chapters_in("Used in chapter 2 (and defined properly in chapter 3).", (1,))
    (2,)
    >>> chapters_in("A library helper.", (1,)) is None
    True
    """
    text = " ".join(docstring.split())
    found: list[int] = []
    claimed = False
    for m in _CLAIM.finditer(text):
        claimed = True
        if m.group("every") is not None or m.group("book") is not None:
            found += every
        for group in ("nums", "more"):
            if m.group(group):
                found += [int(n) for n in re.findall(r"\d+", m.group(group))]
    return tuple(sorted(set(found))) if claimed else None


def chapter_pages() -> dict[int, Path]:
    """Chapter number -> page: ``book/NN_*.md``, and 0 -> ``book/how_to_use.md``."""
    pages = {}
    for page in sorted(BOOK.glob("[0-9][0-9]_*.md")):
        pages[int(page.name[:2])] = page
    if (BOOK / "how_to_use.md").exists():
        pages[0] = BOOK / "how_to_use.md"
    return pages


_CELL = re.compile(r"^```+\{code-cell\}[^\n]*\n(.*?)^```+\s*$", re.MULTILINE | re.DOTALL)


def code_cells(page: Path) -> list[str]:
    """The source of each code cell of a MyST page, cell options removed."""
    cells = []
    for body in _CELL.findall(page.read_text(encoding="utf-8")):
        lines = body.split("\n")
        if lines and lines[0].strip() == "---":  # a YAML options block
            end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), 0)
            lines = lines[end + 1 :]
        while lines and lines[0].startswith(":"):  # ``:tags: [...]`` options
            lines = lines[1:]
        cells.append("\n".join(lines))
    return cells


@cache
def page_words(page: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(identifiers, string constants) of a page's code cells, read with ``ast``.

    Identifiers are names, attribute names (``M.fourier_basis`` gives
    ``fourier_basis``) and imported names, including those inside f-strings.
    """
    names: set[str] = set()
    strings: set[str] = set()
    for cell in code_cells(page):
        source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.split("\n"))
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            raise AssertionError(f"{page.name}: a code cell does not parse ({exc})") from exc
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.alias):
                names.add(node.name.split(".")[-1])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
    return frozenset(names), frozenset(strings)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def claims(package: Path = HELPERS) -> list[Claim]:
    """Every claim in a function, class or method docstring under ``package``."""
    every = tuple(sorted(n for n in chapter_pages() if n >= 1))
    out = []
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module = _module_name(path)

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    qualname = f"{prefix}{child.name}"
                    doc = ast.get_docstring(child)
                    nums = chapters_in(doc, every) if doc else None
                    if nums is not None:
                        where = f"{path.relative_to(ROOT)}:{child.lineno} {qualname}"
                        out.append(Claim(where, module, qualname, child.name, nums))
                    visit(child, qualname + ".")

        visit(tree, "")
    return out


@cache
def recipe_names() -> dict[tuple[str, str], tuple[frozenset[str], frozenset[str]]]:
    """(module, qualname) of each recipe function -> (checkpoint names, constants naming them).

    The constants are the module-level names of the recipe's module whose value
    is a checkpoint name (``LOOKUP_MODEL = "lookup_1l"``), as a page may pass them.
    """
    import importlib

    from helpers import store

    store.discover_recipes()
    out: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    for name, rec in store._RECIPES.items():
        checkpoint_names, constants = out.setdefault((rec.fn.__module__, rec.fn.__qualname__), (set(), set()))
        checkpoint_names.add(name)
        module = importlib.import_module(rec.fn.__module__)
        constants.update(k for k, v in vars(module).items() if k.isupper() and v == name)
    return {k: (frozenset(a), frozenset(b)) for k, (a, b) in out.items()}


def false_claims(found: list[Claim]) -> list[str]:
    """The claims that break the rule, one readable line each."""
    pages = chapter_pages()
    bad = []
    for claim in found:
        for n in claim.chapters:
            if n not in pages:
                bad.append(f"{claim.where}: says chapter {n}, which has no page in book/")
                continue
            names, strings = page_words(pages[n])
            if claim.name in names:
                continue
            checkpoint_names, constants = recipe_names().get((claim.module, claim.qualname), (frozenset(), frozenset()))
            if checkpoint_names & strings or constants & names:
                continue
            bad.append(f"{claim.where}: says chapter {n}, but {pages[n].name}'s code cells never name it")
    return bad


def test_every_chapter_claim_names_a_page_that_uses_it():
    found = claims()
    assert len(found) > 50, "the claims parser found almost nothing: has the wording changed?"
    bad = false_claims(found)
    assert not bad, (
        f"{len(bad)} of {len(found)} 'Used in chapter N' claims are false (rule: tests/test_docstring_claims.py):\n"
        + "\n".join(bad)
    )


def test_no_docstring_both_claims_and_disclaims():
    for path in sorted(HELPERS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node) or ""
                if _NOT_USED.search(" ".join(doc.split())):
                    assert chapters_in(doc, (1,)) is None, f"{path}:{node.lineno} {node.name}"


# ------------------------------------------------ the checker itself can fail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Used in chapter 3.", (3,)),
        ("used in\n    chapter 12 (a long line).", (12,)),
        ("Used in chapters 1, 2 and 4.", (1, 2, 4)),
        ("Used in chapter 4 (and in chapters 5, 7 and 8).", (4, 5, 7, 8)),
        ("Used throughout the book.", (1, 2)),
        ("Used in every chapter that trains a model.", None),
        ("Returns the pattern used in the forward pass.", None),
        ("Not used by a page; a library helper.", None),
    ],
)
def test_the_parser_reads_each_form(text, expected):
    assert chapters_in(text, (1, 2)) == expected


def test_the_checker_catches_a_false_claim():
    pages = chapter_pages()
    some = min(n for n in pages if n >= 1)
    page_names, _ = page_words(pages[some])
    absent = "surely_no_page_calls_this_function"
    assert absent not in page_names
    claim = Claim("x.py:1 f", "helpers.x", absent, absent, (some,))
    assert len(false_claims([claim])) == 1
    used = next(iter(sorted(n for n in page_names if n.isidentifier() and len(n) > 3)))
    assert false_claims([Claim("x.py:1 g", "helpers.x", used, used, (some,))]) == []
    assert "no page" in false_claims([Claim("x.py:1 g", "helpers.x", used, used, (99,))])[0]


def test_code_cells_skip_options_prose_and_comments(tmp_path):
    page = tmp_path / "01_x.md"
    page.write_text(
        "# title mentions prose_name\n\n```{code-cell} ipython3\n:tags: [remove-cell]\n"
        "%matplotlib inline\nfrom helpers import store\nm = store.load('ckpt')  # comment_name\n"
        "real_call(m)\n```\n\n```{code-cell} ipython3\n---\ntags: [hide-input]\n---\nother_call()\n```\n",
        encoding="utf-8",
    )
    names, strings = page_words(page)
    assert {"real_call", "other_call", "store", "load"} <= names
    assert not {"prose_name", "comment_name", "matplotlib", "tags"} & names
    assert "ckpt" in strings
