"""The one-way import rule of ``helpers``, read from the source with ``ast``.

Imports point one way: book pages -> chapter modules -> shared core -> torch/numpy.

* **Shared modules** (``SHARED``, and every private top-level module or package
  ``helpers/_*.py``) import no chapter module and no exercise module.
* **Chapter modules** (``CHAPTERS``; a chapter module may be a subpackage such as
  ``helpers/notation/``, whose files count as that one module) import shared
  modules and their own files, no other chapter module, with one exception:
  ``modular`` may be imported by the chapters listed in ``MAY_IMPORT_MODULAR``.
* **Exercises** (``helpers/exercises/*``: answer keys and checks) may import
  anything in ``helpers``.
* The package root ``helpers/__init__.py`` imports submodules only lazily.
* Nothing in ``helpers`` imports from ``book/`` or ``tests/``.

Every ``import`` statement counts, wherever it is (module level, inside a
function, under ``if TYPE_CHECKING:``); ``from helpers import x`` and relative
imports (``from . import x``, ``from ..modular import y``) are resolved to the
module they name. Imports built at run time (``importlib.import_module(name)``)
are not seen; the store's recipe discovery is the one place that does that.

Modules are discovered from the file tree, so a new chapter's module is checked
as soon as it lands; a module that is in none of the lists fails
:func:`test_every_module_is_classified` until it is added to one of them.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "helpers"

# The shared core: every chapter may use these; they use no chapter.
SHARED = {"transformer", "training", "store", "plotting", "widgets", "patching"}
# One module (or subpackage) per chapter.
CHAPTERS = {
    "notation",  # chapter 1 (a subpackage)
    "decompositions",  # chapter 2
    "circuits",  # chapter 3
    "modular",  # chapter 4
    "integration",  # chapter 5
    "inversion",  # chapter 6
    "degeneracy",  # chapter 7
    "quantized",  # chapter 8
    "toy",  # the smoke-test model of the store (a recipe like a chapter's)
}
# The one chapter module others may build on, and who may.
MAY_IMPORT_MODULAR = {"integration", "degeneracy", "quantized"}
EXERCISES = {"exercises"}
# Never imported from the library.
FORBIDDEN_TOP_LEVEL = {"book", "tests", "conftest"}


@dataclass(frozen=True)
class Import:
    """One imported module, resolved to its dotted name, where it was written."""

    module: str
    path: Path
    line: int


def module_name(path: Path, package_dir: Path) -> str:
    """``helpers/notation/_graph.py`` -> ``helpers.notation._graph`` (``__init__`` dropped)."""
    rel = path.relative_to(package_dir.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str, package: str = PACKAGE) -> str | None:
    """The top-level part of ``helpers`` that ``module`` belongs to.

    ``helpers.notation._graph`` -> ``notation``; ``helpers`` -> ``""`` (the root);
    a module outside the package -> None.
    """
    parts = module.split(".")
    if parts[0] != package:
        return None
    return parts[1] if len(parts) > 1 else ""


def discover(package_dir: Path) -> dict[str, Path]:
    """Every module of the package (dotted name -> file), ``__pycache__`` excluded."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        found[module_name(path, package_dir)] = path
    return found


def imports_of(path: Path, module: str, known: set[str]) -> list[Import]:
    """Every module imported anywhere in ``path`` (which is module ``module``).

    ``from pkg import name`` yields ``pkg.name`` when that is a known module
    (a submodule import), else ``pkg``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(alias.name, path, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = here[: len(here) - (node.level - 1)] if node.level > 1 else list(here)
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                out.append(Import(candidate if candidate in known else base, path, node.lineno))
    return out


def classify(unit: str) -> str | None:
    """``"root"``, ``"shared"``, ``"chapter"``, ``"exercises"``, or None if unknown."""
    if unit == "":
        return "root"
    if unit in SHARED or unit.startswith("_"):
        return "shared"
    if unit in CHAPTERS:
        return "chapter"
    if unit in EXERCISES:
        return "exercises"
    return None


def violations(package_dir: Path, package: str = PACKAGE) -> list[str]:
    """Every import in ``package_dir`` that breaks the rule, as readable lines."""
    modules = discover(package_dir)
    known = set(modules)
    problems = []
    for module, path in modules.items():
        src_unit = unit_of(module, package)
        kind = classify(src_unit)
        if kind is None:
            continue  # reported by test_every_module_is_classified
        where = path.relative_to(package_dir.parent)
        for imp in imports_of(path, module, known):
            top = imp.module.split(".")[0]
            if top in FORBIDDEN_TOP_LEVEL:
                problems.append(f"{where}:{imp.line} imports {imp.module!r}: the library never imports book/ or tests/")
                continue
            dst_unit = unit_of(imp.module, package)
            if dst_unit is None or dst_unit == src_unit:
                continue  # third party, the standard library, or its own files
            dst_kind = classify(dst_unit)
            if kind == "exercises":
                continue
            if kind == "root":
                if dst_kind != "shared" and dst_unit != "":
                    problems.append(
                        f"{where}:{imp.line} imports {imp.module!r}: the package root loads chapter modules lazily"
                    )
            elif kind == "shared":
                if dst_kind in ("chapter", "exercises"):
                    problems.append(
                        f"{where}:{imp.line}: shared module {src_unit!r} imports {dst_kind} module "
                        f"{dst_unit!r}; the shared core must not depend on a chapter"
                    )
            elif kind == "chapter":
                if dst_kind == "exercises":
                    problems.append(
                        f"{where}:{imp.line}: chapter module {src_unit!r} imports the exercises "
                        f"({imp.module!r}); answer keys live outside the library"
                    )
                elif dst_kind == "chapter" and not (dst_unit == "modular" and src_unit in MAY_IMPORT_MODULAR):
                    problems.append(
                        f"{where}:{imp.line}: chapter module {src_unit!r} imports chapter module "
                        f"{dst_unit!r}; chapter modules do not import each other (only "
                        f"{sorted(MAY_IMPORT_MODULAR)} may import 'modular'). Move the shared piece "
                        f"into a shared module."
                    )
    return problems


def unclassified(package_dir: Path, package: str = PACKAGE) -> list[str]:
    """Top-level parts of the package that are in none of the lists."""
    units = {unit_of(m, package) for m in discover(package_dir)}
    return sorted(u for u in units if u is not None and classify(u) is None)


# --------------------------------------------------------------------- the rule


def test_every_module_is_classified():
    missing = unclassified(ROOT / PACKAGE)
    assert not missing, (
        f"helpers modules {missing} are in none of the lists of tests/test_architecture.py: "
        "add each to CHAPTERS (a chapter's module) or SHARED (the core every chapter may use; "
        "it must not import a chapter module), or name it with a leading underscore "
        "(a private shared module)."
    )


def test_imports_point_one_way():
    problems = violations(ROOT / PACKAGE)
    assert not problems, "import rule broken:\n" + "\n".join(problems)


def test_the_lists_do_not_overlap():
    assert not SHARED & CHAPTERS
    assert MAY_IMPORT_MODULAR <= CHAPTERS
    assert "modular" in CHAPTERS


def test_discovery_sees_subpackages_and_private_files():
    modules = discover(ROOT / PACKAGE)
    assert "helpers" in modules and "helpers.store" in modules
    assert any(m.startswith("helpers.notation.") for m in modules), "the notation subpackage's files"
    assert unit_of("helpers.notation._graph") == "notation"
    assert classify("notation") == "chapter" and classify("_util") == "shared"


# ------------------------------------------------ the checker itself can fail


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / PACKAGE
    for rel, text in {"__init__.py": "", **files}.items():
        p = pkg / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return pkg


@pytest.mark.parametrize(
    ("files", "culprit"),
    [
        ({"store.py": "from helpers.circuits import x\n", "circuits.py": ""}, "store.py:1"),
        ({"plotting.py": "def f():\n    import helpers.modular\n", "modular.py": ""}, "plotting.py:2"),
        ({"_util.py": "from helpers import notation\n", "notation/__init__.py": ""}, "_util.py:1"),
        ({"circuits.py": "from helpers.modular import y\n", "modular.py": ""}, "circuits.py:1"),
        ({"integration.py": "from helpers import circuits as C\n", "circuits.py": ""}, "integration.py:1"),
        ({"notation/__init__.py": "", "notation/_g.py": "from ..circuits import q\n", "circuits.py": ""}, "_g.py:1"),
        ({"modular.py": "from helpers.exercises.ch4 import check\n", "exercises/ch4.py": ""}, "modular.py:1"),
        ({"transformer.py": "import tests.test_store\n"}, "transformer.py:1"),
        ({"modular.py": "if True:\n    from book import page\n"}, "modular.py:2"),
    ],
)
def test_the_checker_reports_a_broken_rule(tmp_path, files, culprit):
    problems = violations(_fake_package(tmp_path, files))
    assert any(culprit in p for p in problems), problems


@pytest.mark.parametrize(
    "files",
    [
        {"integration.py": "from helpers.modular import all_pairs\nfrom helpers import transformer\n",
         "modular.py": "from helpers.training import train\n", "transformer.py": "", "training.py": ""},
        {"exercises/__init__.py": '"""Answer keys."""\n',
         "exercises/ch3.py": "from helpers import circuits, modular\nfrom helpers.notation import diagram\n",
         "circuits.py": "", "modular.py": "", "notation/__init__.py": "from ._graph import diagram\n",
         "notation/_graph.py": "from helpers.store import recipe\ndiagram = 1\n", "store.py": ""},
        {"widgets.py": "from helpers.plotting import attention_heatmap\nimport torch\n", "plotting.py": ""},
    ],
)
def test_the_checker_accepts_allowed_imports(tmp_path, files):
    assert violations(_fake_package(tmp_path, files)) == []


def test_an_unknown_module_must_be_classified(tmp_path):
    pkg = _fake_package(tmp_path, {"store.py": "", "newchapter.py": "", "_private.py": ""})
    assert unclassified(pkg) == ["newchapter"]
