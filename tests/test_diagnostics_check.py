"""bitmod-opt --split-input-file / --verify-diagnostics (bitmod.compiler.diagnostics_check):
splitting keeps the file's line numbers; expectations match exactly the diagnostics produced
(by severity, line and message text); every mismatch is one located line and exit status 1."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bitmod.compiler.diagnostics_check import Chunk, split_input
from bitmod.compiler.tools.bitmod_opt import main

ROOT = Path(__file__).resolve().parent
BSISA_INVALID = ROOT / "filecheck" / "dialects" / "bsisa" / "invalid.mlir"
BITMOD_INVALID = ROOT / "filecheck" / "dialects" / "bitmod" / "invalid.mlir"

GOOD = "bsisa.program @ok {\n  bsisa.nop\n  bsisa.halt\n}\n"
# A program whose cfg.kchunk (line 2 of the snippet) is out of range.
BAD_KCHUNK = "bsisa.program @p {{\n  bsisa.cfg.kchunk 0{comment}\n  bsisa.halt\n}}\n"
# A float matmul that bitmod-tile warns about (nothing to tile), on line 2 of the snippet.
FLOAT_MATMUL = (
    "func.func @f(%x: tensor<4x8xf32>, %w: tensor<2x8xf32>) -> tensor<4x2xf32> {{\n"
    "  %y = bitmod.matmul %x, %w : (tensor<4x8xf32>, tensor<2x8xf32>) -> tensor<4x2xf32>{comment}\n"
    "  func.return %y : tensor<4x2xf32>\n"
    "}}\n"
)


def run(capsys: pytest.CaptureFixture[str], path: Path, *options: str) -> tuple[int, str, str]:
    status = main([str(path), *options])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def verify(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, *options: str):
    source = tmp_path / "input.mlir"
    source.write_text(text)
    return run(capsys, source, "--split-input-file", "--verify-diagnostics", *options)


def test_split_keeps_the_line_numbers_of_the_file() -> None:
    text = "a\nb\n// -----\nc\n// ----- trailing words are part of the marker line\nd\ne\n"
    chunks = split_input(text)
    assert chunks == [
        Chunk("a\nb\n", 1, 2),
        Chunk("\n" * 3 + "c\n", 4, 4),
        Chunk("\n" * 5 + "d\ne\n", 6, 7),
    ]
    assert split_input(text, split=False) == [Chunk(text, 1, 7)]


def test_errors_of_later_chunks_name_their_line_in_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Chunk 2 starts on line 6 (after the 4 lines of GOOD and the marker); cfg.kchunk is line 7.
    source = tmp_path / "input.mlir"
    source.write_text(GOOD + "// -----\n" + BAD_KCHUNK.format(comment=""))
    status, out, err = run(capsys, source, "--split-input-file")
    assert status == 1 and out == ""
    assert err.strip() == (
        f"{source}:7:3: error: 'bsisa.cfg.kchunk' op cfg.kchunk: kc must be >= 1"
    )
    # Without splitting the whole file is one module: its two programs verify in order.
    assert run(capsys, source)[2].strip() == err.strip()


def test_split_outputs_every_chunk(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = tmp_path / "input.mlir"
    source.write_text(GOOD + "// -----\n" + GOOD.replace("@ok", "@second"))
    status, out, err = run(capsys, source, "--split-input-file")
    assert status == 0 and err == ""
    first, second = out.split("// -----\n")
    assert "bsisa.program @ok {" in first and "@second" not in first
    assert "bsisa.program @second {" in second


def test_matching_diagnostics_pass(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = (
        BAD_KCHUNK.format(comment="  // expected-error {{kc must be >= 1}}") + "// -----\n" + GOOD
    )
    status, out, err = verify(capsys, tmp_path, text)
    assert (status, err) == (0, "")
    assert "bsisa.program @ok" in out and "@p" not in out  # the failing chunk prints nothing


def test_an_expected_error_not_produced_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = GOOD.replace("bsisa.nop", "bsisa.nop  // expected-error {{never happens}}")
    status, _, err = verify(capsys, tmp_path, text)
    assert status == 1
    assert err.strip() == (
        f'{tmp_path / "input.mlir"}:2: error: expected error "never happens" was not produced '
        "(expectation on line 2)"
    )


def test_an_unexpected_error_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = verify(capsys, tmp_path, BAD_KCHUNK.format(comment=""))
    assert status == 1
    assert err.strip() == (
        f"{tmp_path / 'input.mlir'}:2:3: error: unexpected error: 'bsisa.cfg.kchunk' op "
        "cfg.kchunk: kc must be >= 1"
    )


def test_a_wrong_message_is_both_unexpected_and_missing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = BAD_KCHUNK.format(comment="  // expected-error {{kc must be >= 2}}")
    status, _, err = verify(capsys, tmp_path, text)
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 2
    assert lines[0].endswith(
        ":2:3: error: unexpected error: 'bsisa.cfg.kchunk' op cfg.kchunk: kc must be >= 1"
    )
    assert lines[1].endswith(
        ':2: error: expected error "kc must be >= 2" was not produced (expectation on line 2)'
    )


@pytest.mark.parametrize(
    ("before", "after", "passes"),
    [
        ("// expected-error@+1 {{kc must be >= 1}}\n", "", True),
        ("// expected-error@below {{kc must be >= 1}}\n", "", True),
        ("", "// expected-error@-1 {{kc must be >= 1}}\n", True),
        ("", "// expected-error@above {{kc must be >= 1}}\n", True),
        ("// expected-error@+2 {{kc must be >= 1}}\n", "", False),
        ("", "// another line\n// expected-error@above {{kc must be >= 1}}\n", False),
    ],
)
def test_offsets_name_lines_relative_to_the_comment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, before: str, after: str, passes: bool
) -> None:
    lines = BAD_KCHUNK.format(comment="").splitlines(keepends=True)
    text = "".join(lines[:1]) + before + lines[1] + after + "".join(lines[2:])
    status, _, err = verify(capsys, tmp_path, text)
    assert (status == 0) is passes, err


def test_expected_warnings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    expected = FLOAT_MATMUL.format(comment="  // expected-warning {{nothing to do}}")
    status, out, err = verify(capsys, tmp_path, expected, "-p", "bitmod-tile")
    assert (status, err) == (0, "")
    assert "bitmod.matmul %x, %w" in out  # a chunk with only warnings prints its output
    status, _, err = verify(capsys, tmp_path, FLOAT_MATMUL.format(comment=""), "-p", "bitmod-tile")
    assert status == 1
    assert re.fullmatch(
        r".*:2:3: error: unexpected warning: 'bitmod.matmul' op bitmod-tile: .*", err.strip()
    )
    wrong = FLOAT_MATMUL.format(comment="  // expected-error {{nothing to do}}")
    status, _, err = verify(capsys, tmp_path, wrong, "-p", "bitmod-tile")
    assert status == 1 and "unexpected warning" in err and 'expected error "nothing to do"' in err


def test_a_malformed_expectation_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = GOOD.replace("bsisa.nop", "bsisa.nop  // expected-error@twice {{x}}")
    status, _, err = verify(capsys, tmp_path, text)
    assert status == 1 and ":2:17: error: malformed expectation 'expected-error@twice {{x}}'" in err


def test_a_binary_cannot_be_split(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, err = verify(capsys, tmp_path, GOOD, "--emit=bin")
    assert (status, out) == (1, "")
    assert "use --emit=mlir or asm" in err


@pytest.mark.parametrize("path", [BSISA_INVALID, BITMOD_INVALID])
def test_dialect_invalid_files_pass(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    status, _, err = run(capsys, path, "--split-input-file", "--verify-diagnostics")
    assert (status, err) == (0, "")


def test_bsisa_invalid_fails_when_an_expected_diagnostic_is_deleted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = BSISA_INVALID.read_text().splitlines(keepends=True)
    expectations = [i for i, line in enumerate(lines) if "// expected-error" in line]
    assert len(expectations) >= 80
    for index in (expectations[0], expectations[len(expectations) // 2], expectations[-1]):
        copy = tmp_path / "invalid.mlir"
        copy.write_text("".join(lines[:index] + lines[index + 1 :]))
        status, _, err = run(capsys, copy, "--split-input-file", "--verify-diagnostics")
        assert status == 1
        problems = err.strip().splitlines()
        assert len(problems) == 1 and ": error: unexpected error: " in problems[0], err


@pytest.mark.parametrize(
    ("comment", "passes"),
    [
        ("// expected-error @+1 {{kc must be >= 1}}", True),  # MLIR allows the space
        ("// expected-error-re @+1 {{kc must be >= {{[0-9]}}}}", True),
        ("// expected-error-re @+1 {{kc must be >= {{[2-9]}}}}", False),
        ("// expected-error-re @+1 {{kc must be .= 1}}", False),  # outside {{}}: literal text
    ],
)
def test_spaced_offsets_and_regex_expectations(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, comment: str, passes: bool
) -> None:
    lines = BAD_KCHUNK.format(comment="").splitlines(keepends=True)
    text = lines[0] + comment + "\n" + "".join(lines[1:])
    status, _, err = verify(capsys, tmp_path, text)
    assert (status == 0) is passes, err
    if not passes:
        assert "unexpected error" in err and "was not produced" in err


@pytest.mark.parametrize(
    "comment",
    [
        "// expected-error {{kc must be >= 1",  # unclosed
        "// expected-error kc must be >= 1",  # no braces at all
        "// expected-eror {{kc must be >= 1}}",  # misspelt severity
        "// expected-error-re {{kc {{[0-9}}}}",  # a regex that does not compile
    ],
)
def test_an_expectation_that_would_be_skipped_is_malformed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, comment: str
) -> None:
    """Before, these were not recognised at all: the chunk's error then passed as expected
    only because nothing was checked, or failed with a misleading 'unexpected error'."""
    text = GOOD.replace("bsisa.nop", f"bsisa.nop  {comment}")
    status, _, err = verify(capsys, tmp_path, text)
    assert status == 1
    assert f"{tmp_path / 'input.mlir'}:2:17: error: malformed expectation" in err
