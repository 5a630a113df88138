"""The bundled evaluation and calibration text, and the wikitext stripper that made it.

Two corpora ship with bitmod (``compiler/llm/data/``, see its ``SOURCES.md``), both taken from
the test data of the ``gensim==4.4.0`` wheel by ``examples/llm/extract_text.py``:

* ``wiki``: real English Wikipedia articles (a 2016 dump excerpt, CC BY-SA 3.0), the markup
  stripped to plain paragraphs by :func:`strip_wikitext`;
* ``news``: the Lee background corpus of ABC (Australian Broadcasting Corporation) news
  articles.

Each corpus is split by whole documents into an ``eval`` part (perplexity) and a disjoint
``calib`` part (calibration for activation-aware methods): no document is in both. In the
files a document is a run of non-empty lines (one paragraph a line; a wiki article's first
line is its title); documents are separated by one empty line.
"""

from __future__ import annotations

import html
import re
from importlib.resources import files
from pathlib import Path

__all__ = [
    "CORPORA",
    "SPLITS",
    "TextError",
    "corpus_path",
    "load_documents",
    "load_text",
    "strip_wikitext",
]

CORPORA = ("wiki", "news")
SPLITS = ("eval", "calib")


class TextError(ValueError):
    """An unknown corpus or split, or a text file that cannot be read."""


def corpus_path(corpus: str, split: str = "eval") -> Path:
    """The bundled file of ``corpus`` (``wiki``/``news``) and ``split`` (``eval``/``calib``)."""
    if corpus not in CORPORA:
        raise TextError(f"unknown corpus {corpus!r}; bundled corpora: {', '.join(CORPORA)}")
    if split not in SPLITS:
        raise TextError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    return Path(str(files("bitmod.compiler.llm").joinpath("data", f"{corpus}_{split}.txt")))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TextError(f"cannot read text file {path}: {error}") from None


def load_documents(corpus: str | Path, split: str = "eval") -> list[str]:
    """The documents of a bundled corpus, or of a text file (documents = blank-line blocks)."""
    path = Path(corpus) if isinstance(corpus, Path) or corpus not in CORPORA else None
    text = _read(path if path is not None else corpus_path(str(corpus), split))
    return [block.strip("\n") for block in re.split(r"\n\s*\n", text) if block.strip()]


def load_text(corpus: str | Path, split: str = "eval") -> str:
    """A corpus as one string: its documents joined by a blank line, as in the file."""
    return "\n\n".join(load_documents(corpus, split))


# --- wikitext to plain text ------------------------------------------------------------------

#: Sections after which an article holds only references and link lists.
_TRAILING_SECTIONS = {
    "references",
    "see also",
    "external links",
    "notes",
    "further reading",
    "bibliography",
    "sources",
    "citations",
    "footnotes",
    "notes and references",
}
_DROPPED_LINK_PREFIXES = ("file:", "image:", "category:", "media:", "wikt:", "wp:")
_DROPPED_ELEMENTS = ("ref", "math", "gallery", "timeline", "score", "syntaxhighlight", "source")


def _remove_nested(text: str, pattern: re.Pattern[str]) -> str:
    """Remove innermost matches until none is left (templates and tables nest)."""
    while True:
        text, count = pattern.subn("", text)
        if not count:
            return text


_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_ELEMENT_NAMES = "|".join(_DROPPED_ELEMENTS)
_SELF_CLOSING = re.compile(rf"<(?:{_ELEMENT_NAMES})\b[^>]*/>", re.IGNORECASE)
_ELEMENTS = re.compile(rf"<({_ELEMENT_NAMES})\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_TABLE = re.compile(r"\{\|(?:(?!\{\|)(?!\|\}).)*?\|\}", re.DOTALL)
# A link's text holds no link but may hold single brackets ("Bicyclo[1.1.0]butane").
_INNER_LINK = re.compile(r"\[\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\]")
_EXTERNAL_LINK = re.compile(r"\[(?:https?|ftp)://[^\s\]]*(?:\s([^\]]*))?\]")
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$")
_EMPHASIS = re.compile(r"'{2,}")


def _link_text(match: re.Match[str]) -> str:
    target, _, label = match.group(1).partition("|")
    if target.strip().lower().startswith(_DROPPED_LINK_PREFIXES):
        return ""
    if re.match(r"^[a-z]{2,3}(-[a-z]+)?:", target.strip()):  # interlanguage links
        return ""
    return (label or target).split("|")[-1]


def strip_wikitext(wikitext: str) -> list[str]:
    """Plain paragraphs of a MediaWiki article, one string each (headings included).

    Dropped: comments, ``<ref>``/``<math>``/... elements, templates (``{{...}}``, nested),
    tables (``{|...|}``), file/image/category and interlanguage links, every section from
    "References"/"See also"/"External links"/... on, list markers, leftover HTML tags.
    Kept: link labels (``[[target|label]]`` -> ``label``), external link labels, text of
    emphasis and headings. HTML entities are decoded and whitespace runs collapsed.
    """
    text = _COMMENT.sub("", wikitext)
    text = _ELEMENTS.sub("", _SELF_CLOSING.sub("", text))
    text = _remove_nested(text, _TEMPLATE)
    text = _remove_nested(text, _TABLE)
    while True:  # innermost links first: a file caption may hold links
        text, count = _INNER_LINK.subn(_link_text, text)
        if not count:
            break
    text = _EXTERNAL_LINK.sub(lambda m: m.group(1) or "", text)
    text = html.unescape(_TAG.sub("", text)).replace("\xa0", " ")
    text = _EMPHASIS.sub("", text)
    paragraphs: list[str] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        heading = _HEADING.match(line)
        if heading:
            title = heading.group(2).strip()
            if title.lower() in _TRAILING_SECTIONS:
                break
            line = title
        line = re.sub(r"^[*#:;]+\s*", "", line)
        line = re.sub(r"\(\s*[,;]?\s*\)", "", line)  # parentheses emptied by a template
        line = re.sub(r"\s+([,.;:])", r"\1", re.sub(r"\s+", " ", line)).strip()
        if not line or line.startswith(("|", "!", "{", "}", "__")):
            continue
        paragraphs.append(line)
    return paragraphs
