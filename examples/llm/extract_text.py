"""Extract the bundled evaluation text from the gensim 4.4.0 wheel (run once; output committed).

    pip download --no-deps gensim==4.4.0 -d /tmp/gensim
    python examples/llm/extract_text.py /tmp/gensim/gensim-4.4.0-*.whl

The wheel's test data holds two real English corpora; gensim itself is neither imported nor
installed (the wheel is read as a zip file):

* ``gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2``:
  206 pages of an English Wikipedia dump (2016); the 106 articles that are not redirects are
  stripped to plain paragraphs (:func:`bitmod.compiler.llm.text.strip_wikitext`). Text of
  Wikipedia, CC BY-SA 3.0.
* ``gensim/test/test_data/lee_background.cor``: the Lee background corpus, 300 ABC news
  articles, one a line (Lee, Pincombe and Welsh, "An empirical evaluation of models of text
  document similarity", CogSci 2005).

Each corpus is split by whole documents, in source order: documents go to ``eval`` until it
holds ``--eval-chars``, the following ones to ``calib`` until ``--calib-chars``; the rest is not
shipped. A Wikipedia article contributes at most ``--max-article-chars`` (whole paragraphs from
its start), so that the parts span many articles. The files are rewritten atomically, and
``SOURCES.md`` next to them records sizes and checksums.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import sys
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path

from bitmod.compiler.llm.text import strip_wikitext
from bitmod.runtime.storage.fileio import write_atomically

WIKI_MEMBER = (
    "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
)
NEWS_MEMBER = "gensim/test/test_data/lee_background.cor"
_MEDIAWIKI = "{http://www.mediawiki.org/xml/export-0.10/}"
DATA_DIR = Path(__file__).resolve().parents[2] / "compiler" / "llm" / "data"


def wiki_documents(dump: bytes, max_chars: int) -> list[str]:
    """Title line + plain paragraphs of every article (namespace 0, not a redirect)."""
    root = ElementTree.fromstring(bz2.decompress(dump))
    documents = []
    for page in root.iter(f"{_MEDIAWIKI}page"):
        if (
            page.findtext(f"{_MEDIAWIKI}ns") != "0"
            or page.find(f"{_MEDIAWIKI}redirect") is not None
        ):
            continue
        title = page.findtext(f"{_MEDIAWIKI}title") or ""
        wikitext = page.findtext(f"{_MEDIAWIKI}revision/{_MEDIAWIKI}text") or ""
        if title.endswith("(disambiguation)"):
            continue  # lists of links, not prose
        paragraphs = [title]
        size = len(title)
        for paragraph in strip_wikitext(wikitext):
            if size + len(paragraph) > max_chars and len(paragraphs) > 1:
                break
            paragraphs.append(paragraph)
            size += len(paragraph) + 1
        if len(paragraphs) > 1:
            documents.append("\n".join(paragraphs))
    return documents


def news_documents(corpus: bytes) -> list[str]:
    return [line.strip() for line in corpus.decode("utf-8").splitlines() if line.strip()]


def split(documents: list[str], eval_chars: int, calib_chars: int) -> tuple[list[str], list[str]]:
    """Disjoint parts by whole documents, in order: eval first, then calibration."""
    evaluation: list[str] = []
    calibration: list[str] = []
    for document in documents:
        if sum(map(len, evaluation)) < eval_chars:
            evaluation.append(document)
        elif sum(map(len, calibration)) < calib_chars:
            calibration.append(document)
    return evaluation, calibration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="gensim-4.4.0-*.whl")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help=f"default {DATA_DIR}")
    parser.add_argument("--eval-chars", type=int, default=110_000)
    parser.add_argument("--calib-chars", type=int, default=110_000)
    parser.add_argument("--max-article-chars", type=int, default=6_000)
    args = parser.parse_args(argv)
    try:
        with zipfile.ZipFile(args.wheel) as wheel:
            dump, news = wheel.read(WIKI_MEMBER), wheel.read(NEWS_MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        print(f"extract_text: error: {args.wheel}: {error}", file=sys.stderr)
        return 1
    corpora = {
        "wiki": wiki_documents(dump, args.max_article_chars),
        "news": news_documents(news),
    }
    lines = []
    for corpus, documents in corpora.items():
        parts = split(documents, args.eval_chars, args.calib_chars)
        for part, chosen in zip(("eval", "calib"), parts, strict=True):
            text = "\n\n".join(chosen) + "\n"
            path = args.out / f"{corpus}_{part}.txt"
            write_atomically(path, lambda temporary, text=text: Path(temporary).write_text(text))
            digest = hashlib.sha256(text.encode()).hexdigest()[:16]
            lines.append(f"| `{path.name}` | {len(chosen)} | {len(text):,} | `{digest}` |")
            print(f"{path}: {len(chosen)} documents, {len(text):,} characters")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
