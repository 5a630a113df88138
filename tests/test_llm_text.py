"""The bundled text, the wikitext stripper and the perplexity windows (no model needed)."""

from __future__ import annotations

import pytest
from bitmod.compiler.llm.evaluate import EvalError, Window, make_windows
from bitmod.compiler.llm.text import (
    CORPORA,
    TextError,
    corpus_path,
    load_documents,
    load_text,
    strip_wikitext,
)


def test_strip_wikitext_hand_worked() -> None:
    wikitext = (
        "{{Infobox thing|name={{nested|x}}}}\n"
        "'''Albedo''' ({{IPAc-en|æ|l}}) is the [[diffuse reflection|diffuse reflectivity]] of a "
        "[[surface]].<ref>A book, 2003</ref> It is 0.3&nbsp;on average.<!-- a comment -->\n"
        "[[File:Albedo.svg|thumb|A [[figure]] caption]]\n"
        '{| class="wikitable"\n| a || b\n|}\n'
        "== History ==\n"
        "* The term came from [http://example.org Lambert] in 1760.\n"
        "== See also ==\n"
        "* [[Reflectance]]\n"
    )
    assert strip_wikitext(wikitext) == [
        "Albedo is the diffuse reflectivity of a surface. It is 0.3 on average.",
        "History",
        "The term came from Lambert in 1760.",
    ]


def test_bundled_corpora_are_split_disjointly_by_document() -> None:
    for corpus in CORPORA:
        evaluation = load_documents(corpus, "eval")
        calibration = load_documents(corpus, "calib")
        assert len(evaluation) >= 20 and len(calibration) >= 20
        assert not set(evaluation) & set(calibration)
        for documents in (evaluation, calibration):
            characters = sum(map(len, documents))
            assert 100_000 <= characters <= 120_000, (corpus, characters)
            assert all("[[" not in d and "{{" not in d and "<ref" not in d for d in documents)
    wiki_titles = [d.splitlines()[0] for d in load_documents("wiki")]
    assert wiki_titles[:3] == ["Anarchism", "Autism", "Albedo"]
    sources = (corpus_path("wiki").parent / "SOURCES.md").read_text()
    assert "CC BY-SA 3.0" in sources and "gensim==4.4.0" in sources


def test_load_text_joins_documents_with_a_blank_line(tmp_path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("first doc\nline two\n\n\nsecond doc\n")
    assert load_documents(path) == ["first doc\nline two", "second doc"]
    assert load_text(path) == "first doc\nline two\n\nsecond doc"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: corpus_path("c4"), "unknown corpus 'c4'; bundled corpora: wiki, news"),
        (lambda: corpus_path("wiki", "test"), "unknown split 'test'; splits: eval, calib"),
        (lambda: load_text("/nonexistent/text.txt"), "cannot read text file /nonexistent"),
    ],
)
def test_text_errors_are_one_clear_message(call, message) -> None:
    with pytest.raises(TextError, match=message):
        call()


def test_disjoint_windows_without_bos_lose_each_windows_first_token() -> None:
    # 10 tokens, context 4: windows [0,4) [4,8); tokens 8, 9 unused. No BOS: the first token of
    # each window is context only, so tokens 1-3 and 5-7 are scored.
    assert make_windows(10, 4, 4, has_bos=False) == [Window(0, 1), Window(4, 5)]


def test_windows_with_bos_score_every_token() -> None:
    assert make_windows(8, 4, 4, has_bos=True) == [Window(0, 0), Window(4, 4)]


def test_sliding_windows_score_only_their_new_tokens() -> None:
    # context 4, stride 2 over 8 tokens: [0,4) scores 1-3, [2,6) scores 4-5, [4,8) scores 6-7.
    assert make_windows(8, 4, 2, has_bos=False) == [Window(0, 1), Window(2, 4), Window(4, 6)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((100, 128, 128), "text has 100 tokens, fewer than one window of 128"),
        ((100, 1, 1), "context 1 must be >= 2"),
        ((100, 16, 17), "stride 17 in 1..context"),
        ((100, 16, 0), "stride 0 in 1..context"),
    ],
)
def test_window_errors(args, message) -> None:
    with pytest.raises(EvalError, match=message):
        make_windows(*args, has_bos=False)
