"""Project-level checks: dependency lists in step, README commands, the table of
contents, and that a failing cell fails the book build (the Makefile's command)."""
from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pyproject_pins() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in ("book", "test"):
        reqs += meta["optional-dependencies"][extra]
    pins = {}
    for r in reqs:
        name, _, version = r.partition("==")
        assert version, f"pyproject.toml: {r!r} is not pinned with =="
        pins[name.lower().replace("_", "-")] = version
    return pins


def _environment_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for r in dep.get("pip", []):
                if r.startswith("-") or "==" not in r:
                    continue
                name, _, version = r.partition("==")
                pins[name.lower().replace("_", "-")] = version
    return pins


def test_environment_yml_mirrors_pyproject():
    py, env = _pyproject_pins(), _environment_pins()
    test_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    test_only = {r.partition("==")[0].lower().replace("_", "-") for r in test_extra}
    missing = sorted(set(py) - set(env) - test_only)
    assert not missing, f"environment.yml lacks {missing}"
    differ = {k: (py[k], env[k]) for k in set(py) & set(env) if py[k] != env[k]}
    assert not differ, f"pins differ (pyproject, environment.yml): {differ}"
    assert py["jupyter-book"].startswith("1."), "Jupyter Book must stay on 1.x"
    assert py["torch"] == "2.13.0"


def test_readme_names_the_two_commands_and_the_makefile_has_them():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    for target in ("book", "test", "checkpoints"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "--keep-going --all" in makefile and "-W -n" in makefile


def test_every_toc_file_exists_and_every_page_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"(?:file|root):\s*(\S+)", toc)
    for f in files:
        assert (ROOT / f"{f}.md").exists() or (ROOT / f"{f}.ipynb").exists(), f
    pages = {str(p.relative_to(ROOT).with_suffix("")) for p in (ROOT / "book").glob("*.md")}
    assert pages <= set(files), f"pages not in _toc.yml: {sorted(pages - set(files))}"


def test_no_page_types_a_number_that_should_be_glued():
    """Chapter prose quotes computed numbers through {glue:text}; flag obvious hand-typed accuracies."""
    for page in (ROOT / "book").glob("*.md"):
        text = page.read_text()
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        hits = re.findall(r"\b\d{2,3}\.\d+ ?% (?:accuracy|test accuracy)", prose)
        assert not hits, f"{page.name}: hand-typed results {hits}; glue them"


def _mini_book(tmp: Path, cell: str) -> Path:
    book = tmp / "mini"
    (book / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", book / "_config.yml")
    shutil.copytree(ROOT / "book" / "_ext", book / "book" / "_ext")
    shutil.copy(ROOT / "book" / "references.bib", book / "book" / "references.bib")
    (book / ".vendor").symlink_to(ROOT / ".vendor")
    (book / "tools").symlink_to(ROOT / "tools")  # the build writes each page's .ipynb with tools/make_notebooks.py
    (book / "_toc.yml").write_text("format: jb-book\nroot: book/page\n")
    (book / "book" / "page.md").write_text(
        "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
        "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n"
        f"# A page\n\n```{{code-cell}} ipython3\n{cell}\n```\n"
    )
    return book


@pytest.mark.build
@pytest.mark.slow
@pytest.mark.parametrize("cell, should_pass", [("x = 1 + 1\nassert x == 2", True),
                                               ("raise RuntimeError('deliberate failure')", False)])
def test_a_failing_cell_fails_the_makefile_build(tmp_path, cell, should_pass):
    if not (ROOT / ".vendor").exists():
        pytest.skip("run `make vendor` first (make test does)")
    book = _mini_book(tmp_path, cell)
    out = subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", "build-html", f"BOOK={book}"],
                         capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    if should_pass:
        assert out.returncode == 0, log[-3000:]
    else:
        assert out.returncode != 0, "a deliberately failing cell did not fail the build"
        assert "deliberate failure" in log
