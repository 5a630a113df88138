"""``--split-input-file`` and ``--verify-diagnostics``, as ``mlir-opt`` and ``xdsl-opt`` have them.

Splitting. A line starting with ``// -----`` separates the input into chunks, each compiled
on its own (its own context, module and pass run). A chunk keeps the line numbers of the
whole file: it is compiled as ``first_line - 1`` empty lines followed by its text, so every
diagnostic names the file's own ``LINE:COL``. The outputs of the chunks are printed one after
the other, separated by ``// -----`` lines.

Verifying. Comments in a chunk say which diagnostics compiling it must produce::

    bsisa.cfg.kchunk 0   // expected-error {{kc must be >= 1}}
    // expected-error@+1 {{must end with bsisa.halt}}
    // expected-warning@below {{...}}     (@above, @+N, @-N: lines relative to the comment)
    // expected-error-re {{takes {{[0-9]+}} operands}}   ({{...}} inside: a regex)

A diagnostic matches an expectation of its severity (``error``, ``warning``, ``note``,
``remark``) on its line whose text is part of the diagnostic's message (``'op' op message``).
The run succeeds (exit 0) when every diagnostic of every chunk was expected and every
expectation was met; otherwise each unexpected diagnostic and each expectation not met is one
located error line and the exit status is 1. Chunks that produced no diagnostic print their
output as usual (a chunk with only warnings too).

The compiler stops a chunk at its first error, so a chunk checks at most one error (plus the
warnings before it): write one invalid case per chunk.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bitmod.dialects.diagnostics import DiagnosticError, DiagnosticWarning, SourceLocation

__all__ = [
    "SPLIT_MARKER",
    "Chunk",
    "Diagnostic",
    "DiagnosticsMismatch",
    "Expectation",
    "check_diagnostics",
    "expectations",
    "process_chunks",
    "split_input",
]

SPLIT_MARKER = "// -----"
SEVERITIES = ("error", "warning", "note", "remark")

_CANDIDATE = re.compile(r"expected-[a-z]")
_IS_REGEX = re.compile(r"expected-[a-z]+-re\b")
_EXPECTED = re.compile(
    r"expected-(?P<severity>[a-z]+)(?P<regex>-re)?[ \t]*(?P<offset>@\S+?)?[ \t]*"
    r"\{\{(?P<text>.*?)\}\}"
)
_EXPECTED_RE = re.compile(  # -re: the text runs to the last }} (it holds {{regex}} parts)
    r"expected-(?P<severity>[a-z]+)(?P<regex>-re)[ \t]*(?P<offset>@\S+?)?[ \t]*"
    r"\{\{(?P<text>.*)\}\}"
)
_MALFORMED = (
    "(expected-error|warning|note|remark, optionally -re, optionally @above, @below, @+N or "
    "@-N, then {{text}} closed on the same line)"
)
_OFFSET = re.compile(r"@(?:(?P<word>above|below)|(?P<delta>[+-]\d+))")


@dataclass(frozen=True)
class Chunk:
    """A part of the input between ``// -----`` lines; ``text`` is padded with empty lines so
    that its positions are those of the whole file."""

    text: str
    first_line: int
    last_line: int


def split_input(text: str, split: bool = True) -> list[Chunk]:
    """The chunks of ``text`` (one chunk, the whole text, unless ``split``)."""
    lines = text.splitlines(keepends=True)
    if not split:
        return [Chunk(text, 1, len(lines))]
    chunks = []
    current: list[str] = []
    first = 1
    for number, line in enumerate(lines, start=1):
        if line.startswith(SPLIT_MARKER):
            chunks.append(Chunk("\n" * (first - 1) + "".join(current), first, number - 1))
            current = []
            first = number + 1
        else:
            current.append(line)
    chunks.append(Chunk("\n" * (first - 1) + "".join(current), first, len(lines)))
    return chunks


@dataclass(frozen=True)
class Diagnostic:
    """A diagnostic the compiler produced: severity, position (line 0: none) and message."""

    severity: str
    line: int
    column: int
    message: str

    @classmethod
    def of(cls, report: DiagnosticError | DiagnosticWarning, file: str) -> Diagnostic:
        severity = "warning" if isinstance(report, DiagnosticWarning) else "error"
        location = report.location or SourceLocation(file, 0, 0)
        rendered = report.render(file)
        prefix = f"{location}: {severity}: "
        message = rendered[len(prefix) :] if rendered.startswith(prefix) else rendered
        return cls(severity, location.line, location.column, message)


@dataclass(frozen=True)
class Expectation:
    """An ``expected-<severity>`` comment: the line it is about and the text it wants."""

    severity: str
    line: int
    text: str
    written_at: int
    regex: re.Pattern[str] | None = None
    """For ``expected-<severity>-re``: the text with its ``{{...}}`` parts as regexes."""

    def matches(self, message: str) -> bool:
        if self.regex is not None:
            return self.regex.search(message) is not None
        return self.text in message


def expectations(chunk: Chunk, file: str) -> tuple[list[Expectation], list[str]]:
    """The expectations of a chunk, and a located error for each malformed one."""
    found: list[Expectation] = []
    problems: list[str] = []
    lines = chunk.text.splitlines()
    for number in range(chunk.first_line, chunk.last_line + 1):
        line = lines[number - 1] if number - 1 < len(lines) else ""
        comment = line.find("//")
        if comment < 0:
            continue
        # Every "expected-..." in the comment is an expectation or an error: one written
        # slightly wrong must not be skipped (the chunk would then check nothing).
        position = comment
        while (candidate := _CANDIDATE.search(line, position)) is not None:
            start = candidate.start()
            is_regex = _IS_REGEX.match(line, start) is not None
            match = (_EXPECTED_RE if is_regex else _EXPECTED).match(line, start)
            expectation = None
            if match is not None:
                expectation = _expectation(match, number)
            if expectation is None:
                shown = match.group(0) if match else line[start:].rstrip()
                problems.append(
                    f"{file}:{number}:{start + 1}: error: malformed expectation '{shown}' "
                    + _MALFORMED
                )
                position = match.end() if match else len(line)
                continue
            found.append(expectation)
            position = match.end()
    return found, problems


def _expectation(match: re.Match[str], number: int) -> Expectation | None:
    """The expectation a well-formed comment states, None for a bad severity, offset or regex."""
    severity, text = match.group("severity"), match.group("text")
    target = _target_line(number, match.group("offset") or "")
    if severity not in SEVERITIES or target is None:
        return None
    regex = None
    if match.group("regex"):
        # Literal text with {{regex}} parts, as in MLIR's expected-error-re.
        parts = re.split(r"\{\{(.*?)\}\}", text)
        try:
            regex = re.compile("".join(p if i % 2 else re.escape(p) for i, p in enumerate(parts)))
        except re.error:
            return None
    return Expectation(severity, target, text, number, regex)


def _target_line(line: int, offset: str) -> int | None:
    if not offset:
        return line
    match = _OFFSET.fullmatch(offset)
    if match is None:
        return None
    if match.group("word"):
        return line - 1 if match.group("word") == "above" else line + 1
    return line + int(match.group("delta"))


def check_diagnostics(chunk: Chunk, diagnostics: Sequence[Diagnostic], file: str) -> list[str]:
    """One located error line per diagnostic nobody expected and per expectation not met."""
    expected, problems = expectations(chunk, file)
    unmet = list(expected)
    for diagnostic in diagnostics:
        match = next(
            (
                e
                for e in unmet
                if e.severity == diagnostic.severity
                and e.line == diagnostic.line
                and e.matches(diagnostic.message)
            ),
            None,
        )
        if match is not None:
            unmet.remove(match)
            continue
        where = f"{file}:{diagnostic.line}:{diagnostic.column}"
        problems.append(f"{where}: error: unexpected {diagnostic.severity}: {diagnostic.message}")
    for expectation in unmet:
        problems.append(
            f"{file}:{expectation.line}: error: expected {expectation.severity} "
            f'"{expectation.text}" was not produced (expectation on line {expectation.written_at})'
        )
    return problems


class DiagnosticsMismatch(DiagnosticError):
    """Several chunks failed, or diagnostics differ from the expectations: one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)

    def render(self, default_file: str = "<unknown>") -> str:
        return "\n".join(self.problems)


def _compile_chunk(
    chunk: Chunk, compile_text: Callable[[str], bytes], file: str, verify: bool
) -> tuple[bytes | None, list[Diagnostic], str | None]:
    """(output or None, the diagnostics when verifying, the rendered error otherwise)."""
    if not verify:
        try:
            return compile_text(chunk.text), [], None
        except DiagnosticError as error:
            return None, [], error.render(file)
    failure: DiagnosticError | None = None
    output = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DiagnosticWarning)
        try:
            output = compile_text(chunk.text)
        except DiagnosticError as error:
            failure = error
    diagnostics = []
    for warning in caught:
        if isinstance(warning.message, DiagnosticWarning):
            diagnostics.append(Diagnostic.of(warning.message, file))
        else:  # not a diagnostic: shown as it would have been
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    if failure is not None:
        diagnostics.append(Diagnostic.of(failure, file))
    return output, diagnostics, None


def process_chunks(
    text: str,
    file: str,
    compile_text: Callable[[str], bytes],
    *,
    split: bool,
    verify: bool,
) -> bytes:
    """Compile each chunk with ``compile_text`` (text -> output, DiagnosticError on failure)
    and join the outputs; DiagnosticsMismatch lists every problem (see the module docstring)."""
    outputs: list[bytes] = []
    problems: list[str] = []
    for chunk in split_input(text, split):
        output, diagnostics, error = _compile_chunk(chunk, compile_text, file, verify)
        if verify:
            problems += check_diagnostics(chunk, diagnostics, file)
        elif error is not None:
            problems.append(error)
        if output is not None:
            outputs.append(output)
    if problems:
        raise DiagnosticsMismatch(problems)
    return f"{SPLIT_MARKER}\n".encode().join(outputs)
