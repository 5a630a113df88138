"""The documentation stays true to the repository.

* the generated tables of docs/formats.md, docs/hardware.md and docs/perf-model.md are what
  ``docs/tables.py`` writes from the code today;
* every repository path a page names (a link or a path in backquotes) exists;
* nothing points outside the repository (a user of it has only the repository and the papers).
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TABLES = runpy.run_path(str(ROOT / "docs" / "tables.py"))
PAGES = sorted([ROOT / "README.md", ROOT / "BENCHMARKS.md", *(ROOT / "docs").glob("*.md")])
SKIPPED_DIRS = {".venv", ".git", "Output", "__pycache__", "bitmod.egg-info"}


def test_generated_tables_match_the_code() -> None:
    assert TABLES["stale_tables"]() == []


def test_a_stale_table_is_rewritten_from_the_code() -> None:
    page = "text\n<!-- table: formats-terms -->\n| made | up |\n<!-- end table -->\nmore\n"
    rendered = TABLES["render_page"](page, "test.md")
    table = TABLES["RENDERERS"]["formats-terms"]()
    assert rendered == f"text\n<!-- table: formats-terms -->\n{table}<!-- end table -->\nmore\n"
    # bitmod3's row, from the registry: LOD, two terms, runs on the PE.
    assert "| `bitmod3` | LOD | 2 | yes |" in table
    with pytest.raises(ValueError, match="unknown generated table 'nothing'"):
        TABLES["render_page"]("<!-- table: nothing -->\n<!-- end table -->", "test.md")


_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
_TOP_DIRS = "docs|tests|bench|runtime|compiler|examples|backends|passes|dialects"
_CODE_PATH = re.compile(rf"`((?:{_TOP_DIRS})/[\w./-]*)`")


def _named_paths(page: Path) -> list[str]:
    text = page.read_text()
    links = [t for t in _LINK.findall(text) if "://" not in t]
    return [*links, *_CODE_PATH.findall(text)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_repository_path_exists(page: Path) -> None:
    missing = []
    for name in _named_paths(page):
        base = page.parent if name.startswith(("./", "../")) else ROOT
        if not (base / name).exists() and not (page.parent / name).exists():
            missing.append(name)
    assert missing == [], f"{page.relative_to(ROOT)} names paths that do not exist"


# Pointers a user of the repository cannot follow: the team's design notes and paper copies
# (spelled in pieces so that this file does not match itself in a grep of the tree).
_OUTSIDE = tuple(
    a + b
    for a, b in (
        ("FORMATS", ".md"),
        ("DES", "IGN.md"),
        ("the DES", "IGN"),
        ("/work", "/"),
        ("shared/", "seeds"),
        ("seed ", "00"),
    )
)


def _text_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".md") or not path.is_file():
            continue
        if SKIPPED_DIRS & set(path.relative_to(ROOT).parts):
            continue
        files.append(path)
    return files


def test_nothing_points_outside_the_repository() -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _text_files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(marker in line for marker in _OUTSIDE)
    ]
    assert hits == []
