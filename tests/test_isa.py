"""bsisa: encoding against hand-assembled words, round trips, and rejection of malformed input."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import matmul_nest, matmul_program
from bitmod.runtime.arch.schedule import ORDERS
from bitmod.runtime.formats import FORMAT_IDS, get_format
from bitmod.runtime.isa import (
    BY_OPCODE,
    INSTRUCTION_TYPES,
    AccClr,
    CfgArray,
    CfgFmt,
    CfgKchunk,
    CfgMblock,
    CfgSv,
    DescKind,
    Descriptor,
    Drain,
    EndLoop,
    Halt,
    IsaError,
    LdAct,
    LdWgt,
    Loop,
    LoopDown,
    Mac,
    Nop,
    Program,
    StOut,
    assemble,
    decode_word,
)

SPEC_EXAMPLE = """
.desc d0 act "x" 256x4096
.desc d1 qweight "layer0.weight" 4096x4096 fmt=bitmod3 sb=8 g=128
.desc d2 out "y" 256x4096
cfg.array rows=8 cols=8 tiles=16
cfg.fmt fmt=bitmod3 sb=8 g=128
cfg.sv slot=0 value=3
cfg.kchunk 4096
loop L0 count=32
  loop L1 count=32
    acc.clr
    ld.act d0 row=L0 k=-
    ld.wgt d1 col=L1 k=-
    mac
    drain bias=-
    st.out d2 row=L0 col=L1
  endloop L1
endloop L0
halt
"""


def sample_programs() -> list[Program]:
    bitmod3 = get_format("bitmod3").special_values
    return [
        assemble(SPEC_EXAMPLE),
        matmul_program(
            act="x",
            weight="w",
            out="y",
            m=256,
            n=4096,
            k=4096,
            fmt="bitmod3",
            group_size=128,
            special_values=bitmod3,
        ),
        matmul_program(
            act="a b",
            weight='w"q"',
            out="ÿ",
            m=20,
            n=30,
            k=512,
            fmt="int8",
            group_size=128,
            config=HardwareConfig(tiles=2),
            kchunk=256,
            bias="bias",
        ),
        matmul_program(  # both block loops counting down (loop.down)
            act="x",
            weight="w",
            out="y",
            m=37,
            n=129,
            k=1000,
            fmt="int8",
            group_size=128,
            rows_down=True,
            cols_down=True,
            block_rows=16,
        ),
        Program(
            ("unused", "x", "y", "w"),
            (
                Descriptor(1, DescKind.ACT, 4, 8),
                Descriptor(3, DescKind.QWEIGHT, 8, 8, FORMAT_IDS["int4_asym"], 4, 8),
                Descriptor(2, DescKind.OUT, 4, 8),
            ),
            (Nop(), CfgSv(3, -32768), CfgSv(2, 32767), Halt()),
        ),
    ]


# --- words against hand-assembled bit patterns ------------------------------------------------


def test_words_match_the_spec_layout() -> None:
    bitmod3 = FORMAT_IDS["bitmod3"]
    cases = [
        (Nop(), 0x00 << 56),
        (Halt(), 0x01 << 56),
        (CfgArray(8, 8, 16), 0x10 << 56 | 8 << 48 | 8 << 40 | 16 << 24),
        (CfgSv(1, -3), 0x11 << 56 | 1 << 54 | 0xFFFD << 32),
        (CfgFmt(bitmod3, 8, 128), 0x12 << 56 | bitmod3 << 48 | 8 << 44 | 128 << 24),
        (CfgKchunk(4096), 0x13 << 56 | 4096),
        (CfgMblock(64), 0x14 << 56 | 64),
        (Loop(5, 32), 0x20 << 56 | 5 << 53 | 32),
        (EndLoop(5), 0x21 << 56 | 5 << 53),
        (LoopDown(3, 7), 0x22 << 56 | 3 << 53 | 7),
        (LdAct(2, 0, None), 0x30 << 56 | 2 << 40 | 0 << 36 | 0xF << 32),
        (LdWgt(1, 1, 2), 0x31 << 56 | 1 << 40 | 1 << 36 | 2 << 32),
        (AccClr(), 0x40 << 56),
        (Mac(), 0x41 << 56),
        (Drain(None), 0x42 << 56 | 0xFFFF << 40),
        (Drain(3), 0x42 << 56 | 3 << 40),
        (StOut(7, None, 3), 0x50 << 56 | 7 << 40 | 0xF << 36 | 3 << 32),
    ]
    assert {type(instr) for instr, _ in cases} == set(BY_OPCODE.values())
    for instr, word in cases:
        assert instr.encode() == word, instr
        assert decode_word(word) == instr


def test_container_layout_by_hand() -> None:
    program = Program(("x",), (Descriptor(0, DescKind.ACT, 3, 8),), (Nop(), Halt()))
    body = struct.pack("<H", 1) + b"x"
    body += struct.pack("<IBBBBIII12x", 0, 0, 0, 0, 0, 3, 8, 0)
    body += struct.pack("<QQ", 0, 1 << 56)
    header = b"BSIS" + struct.pack("<HHIIII", 1, 0, 1, 1, 2, zlib.crc32(body))
    assert program.encode() == header + body


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(5))
def test_round_trips(index: int) -> None:
    program = sample_programs()[index]
    binary = program.encode()
    assert Program.decode(binary) == program
    assert Program.decode(binary).encode() == binary
    text = program.to_asm()
    assert assemble(text) == program
    assert assemble(text).encode() == binary
    assert assemble(text).to_asm() == text


def test_spec_example_assembles_as_written() -> None:
    program = assemble(SPEC_EXAMPLE)
    assert program.strings == ("x", "layer0.weight", "y")
    assert program.descriptors[1] == Descriptor(
        1, DescKind.QWEIGHT, 4096, 4096, FORMAT_IDS["bitmod3"], 8, 128
    )
    assert program.instructions[3] == CfgKchunk(4096)
    assert program.instructions[4:6] == (Loop(0, 32), Loop(1, 32))
    assert program.instructions[-1] == Halt()
    assert len(program.instructions) == 15


def test_comments_labels_and_hex() -> None:
    text = """
    ; a comment line
    .desc act0 act "x;y" 16x8   ; semicolon inside the name is not a comment
    .desc o out "out" 16x4
    loop L3 count=0x2 ; two iterations
      st.out o row=L3 col=-
    endloop L3
    """
    program = assemble(text)
    assert program.strings == ("x;y", "out")
    assert program.descriptors[0].dim0 == 16
    assert program.instructions == (Loop(3, 2), StOut(1, 3, None), EndLoop(3))


@pytest.mark.parametrize("order", ORDERS)
def test_program_size_independent_of_matmul_size(order: str) -> None:
    # K = 256 is two chunks of 128 (k-streamed needs several), K = 4096 cut likewise.
    def size(m: int, n: int, k: int) -> int:
        kchunk = 0 if order == "weights-resident" else 128
        program = matmul_program(
            act="x",
            weight="w",
            out="y",
            m=m,
            n=n,
            k=k,
            fmt="int8",
            group_size=128,
            order=order,
            kchunk=kchunk,
            block_rows=16,
        )
        return len(program.instructions)

    k_small = 128 if order == "weights-resident" else 256
    assert size(16, 8, k_small) == size(4096, 11008, 4 * k_small)
    # The compiler's own choice: at most 4 cfg + 1 cfg.mblock + a 12-instruction nest + halt.
    auto = matmul_program(
        act="x", weight="w", out="y", m=4096, n=11008, k=4096, fmt="int8", group_size=128
    )
    assert len(auto.instructions) <= 18


def test_matmul_nests_as_written_in_the_spec() -> None:
    """docs/ISA.md's three nests, written out by hand (act d0, weight d1, out d2, bias d3)."""
    assert matmul_nest("weights-resident", m_blocks=3, n_blocks=2, k_chunks=1, bias=True) == [
        Loop(0, 2),
        LdWgt(1, 0, None),
        Loop(1, 3),
        AccClr(),
        LdAct(0, 1, None),
        Mac(),
        Drain(3),
        StOut(2, 1, 0),
        EndLoop(1),
        EndLoop(0),
    ]
    assert matmul_nest("acts-resident", m_blocks=3, n_blocks=2, k_chunks=4, bias=False) == [
        Loop(0, 3),
        LdAct(0, 0, None),
        Loop(1, 2),
        AccClr(),
        Loop(2, 4),
        LdWgt(1, 1, 2),
        Mac(),
        EndLoop(2),
        Drain(None),
        StOut(2, 0, 1),
        EndLoop(1),
        EndLoop(0),
    ]
    assert matmul_nest("acts-resident", m_blocks=3, n_blocks=2, k_chunks=1, bias=False) == [
        Loop(0, 3),
        LdAct(0, 0, None),
        Loop(1, 2),
        AccClr(),
        LdWgt(1, 1, None),
        Mac(),
        Drain(None),
        StOut(2, 0, 1),
        EndLoop(1),
        EndLoop(0),
    ]
    assert matmul_nest("k-streamed", m_blocks=3, n_blocks=2, k_chunks=4, bias=False) == [
        Loop(0, 2),
        Loop(1, 3),
        AccClr(),
        Loop(2, 4),
        LdAct(0, 1, 2),
        LdWgt(1, 0, 2),
        Mac(),
        EndLoop(2),
        Drain(None),
        StOut(2, 1, 0),
        EndLoop(1),
        EndLoop(0),
    ]
    # rows_down / cols_down: the row / column block loop counts down, whichever level it is.
    assert matmul_nest(
        "k-streamed", m_blocks=3, n_blocks=2, k_chunks=4, bias=False, cols_down=True
    )[:2] == [LoopDown(0, 2), Loop(1, 3)]
    assert matmul_nest(
        "acts-resident", m_blocks=3, n_blocks=2, k_chunks=1, bias=False, cols_down=True
    )[:3] == [Loop(0, 3), LdAct(0, 0, None), LoopDown(1, 2)]
    assert matmul_nest(
        "weights-resident", m_blocks=3, n_blocks=2, k_chunks=1, bias=False, rows_down=True
    )[:3] == [Loop(0, 2), LdWgt(1, 0, None), LoopDown(1, 3)]
    with pytest.raises(IsaError, match="weights-resident needs K in one chunk"):
        matmul_nest("weights-resident", m_blocks=1, n_blocks=1, k_chunks=2, bias=False)
    with pytest.raises(IsaError, match="unknown loop order 'sideways'"):
        matmul_nest("sideways", m_blocks=1, n_blocks=1, k_chunks=1, bias=False)


def test_block_rows_other_than_the_array_rows_set_mr() -> None:
    program = matmul_program(
        act="x",
        weight="w",
        out="y",
        m=256,
        n=256,
        k=4096,
        fmt="int8",
        group_size=128,
        order="acts-resident",
        block_rows=32,
    )
    assert program.instructions[:4] == (
        CfgArray(8, 8, 16),
        CfgFmt(FORMAT_IDS["int8"], 8, 128),
        CfgKchunk(1408),
        CfgMblock(32),
    )
    assert "cfg.mblock rows=32" in program.to_asm()
    assert assemble(program.to_asm()) == program


# --- binary corruption ------------------------------------------------------------------------


def test_every_single_byte_corruption_is_rejected() -> None:
    binary = sample_programs()[2].encode()
    for offset in range(len(binary)):
        for flip in (0x01, 0x80, 0xFF):
            corrupt = bytearray(binary)
            corrupt[offset] ^= flip
            with pytest.raises(IsaError):
                Program.decode(bytes(corrupt))


def test_every_truncation_and_extension_is_rejected() -> None:
    binary = sample_programs()[2].encode()
    for length in range(len(binary)):
        with pytest.raises(IsaError, match="truncated|CRC|byte offset"):
            Program.decode(binary[:length])
    with pytest.raises(IsaError, match="trailing"):
        Program.decode(binary + b"\0")


def _with_body(binary: bytes, patch) -> bytes:
    """Apply ``patch`` to the body and fix the CRC, to reach the checks behind it."""
    body = bytearray(binary[24:])
    patch(body)
    header = bytearray(binary[:24])
    header[20:24] = struct.pack("<I", zlib.crc32(bytes(body)))
    return bytes(header) + bytes(body)


def _code_offset(program: Program) -> int:
    return program.encode().__len__() - 8 * len(program.instructions)


@pytest.mark.parametrize(
    ("word", "message"),
    [
        (0x7F << 56, "unknown opcode 0x7f"),
        (0x40 << 56 | 1, "reserved bits"),
        (0x30 << 56 | 0 << 40 | 9 << 36 | 0xF << 32, "loop level 9"),
        (0x20 << 56 | 0 << 53 | 0, "count must be >= 1"),
        (0x10 << 56 | 0 << 48 | 8 << 40 | 1 << 24, "rows/cols/tiles"),
        (0x12 << 56 | 250 << 48 | 8 << 44 | 128 << 24, "unknown weight format id 250"),
        (0x12 << 56 | FORMAT_IDS["int8"] << 48 | 8 << 44 | 6 << 24, "multiple of 4"),
        (0x42 << 56 | 9 << 40, "descriptor 9 out of range"),
        (0x30 << 56 | 2 << 40 | 0xF << 36 | 0xF << 32, "is out, needs act"),
        (0x30 << 56 | 0 << 40 | 6 << 36 | 0xF << 32, "L6 is not an open loop"),
    ],
)
def test_bad_instruction_names_index_and_offset(word: int, message: str) -> None:
    program = sample_programs()[0]
    index = 4  # replaces the first loop: the nest becomes unbalanced only after this check
    offset = _code_offset(program) + 8 * index
    binary = _with_body(
        program.encode(),
        lambda body: body.__setitem__(slice(offset - 24, offset - 16), struct.pack("<Q", word)),
    )
    with pytest.raises(IsaError, match=message) as info:
        Program.decode(binary)
    assert info.value.index == index
    assert info.value.offset == offset
    assert f"instruction {index}" in str(info.value) and f"byte offset {offset}" in str(info.value)


def test_header_errors_name_offsets() -> None:
    binary = sample_programs()[0].encode()
    with pytest.raises(IsaError, match="bad magic") as info:
        Program.decode(b"XSIS" + binary[4:])
    assert info.value.offset == 0
    with pytest.raises(IsaError, match="version 2") as info:
        Program.decode(binary[:4] + struct.pack("<H", 2) + binary[6:])
    assert info.value.offset == 4
    with pytest.raises(IsaError, match="CRC mismatch"):
        Program.decode(binary[:-1] + bytes([binary[-1] ^ 1]))
    with pytest.raises(IsaError, match="header alone"):
        Program.decode(b"BSIS")


def test_unbalanced_loops_rejected() -> None:
    for code, message in [
        ((Loop(0, 2), Nop()), r"never closed"),
        ((Loop(0, 2), EndLoop(1)), r"closes L1, innermost open is L0"),
        ((EndLoop(0),), r"innermost open is none"),
        ((Loop(0, 2), Loop(0, 2), EndLoop(0), EndLoop(0)), r"already open"),
        ((Loop(0, 2), Loop(1, 2), EndLoop(0), EndLoop(1)), r"closes L0, innermost open is L1"),
    ]:
        with pytest.raises(IsaError, match=message):
            Program((), (), code).encode()


def test_bad_descriptors_rejected() -> None:
    int8 = FORMAT_IDS["int8"]
    for desc, message in [
        (Descriptor(5, DescKind.ACT, 1, 1), "name index 5"),
        (Descriptor(0, DescKind.ACT, 0, 4), "dims"),
        (Descriptor(0, DescKind.BIAS, 4, 2), "dim1 = 1"),
        (Descriptor(0, DescKind.QWEIGHT, 4, 4, int8, 0, 4), "scale bits"),
        (Descriptor(0, DescKind.QWEIGHT, 4, 4, int8, 8, 6), "group size"),
        (Descriptor(0, DescKind.OUT, 4, 4, int8), "fmt/sb/group = 0"),
    ]:
        with pytest.raises(IsaError, match=message):
            Program(("x",), (desc,), ()).encode()
    with pytest.raises(IsaError, match="duplicate tensor name"):
        Program(("x", "x"), (), ()).encode()
    binary = sample_programs()[0].encode()
    kind_offset = 24 + sum(2 + len(s) for s in ("x", "layer0.weight", "y")) + 4
    with pytest.raises(IsaError, match="unknown kind 7") as info:
        Program.decode(_with_body(binary, lambda b: b.__setitem__(kind_offset - 24, 7)))
    assert info.value.offset == kind_offset


# --- assembly errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("nop\nfrobnicate", 2, "unknown mnemonic 'frobnicate'"),
        ("nop\n\n.desc d0 act x 4x4", 3, "quoted tensor name"),
        ('.desc d0 weird "x" 4x4', 1, "unknown descriptor kind"),
        ('.desc d0 qweight "w" 4x4 fmt=int8 sb=8', 1, r"needs \['g'\]"),
        ('.desc d0 qweight "w" 4x4 fmt=int99 sb=8 g=4', 1, "unknown weight format 'int99'"),
        ('.desc d0 act "x" 4x4\n.desc d0 act "z" 4x4', 2, "defined twice"),
        ("loop L0 count=2\nnop\nendloop L1", 3, "closes L1"),
        ("loop L0 count=2\nnop", 2, "never closed"),
        ("cfg.array rows=8 cols=8", 1, "missing operand tiles="),
        ("cfg.array rows=8 cols=8 tiles=1 extra=2", 1, "unexpected operands"),
        ("cfg.sv slot=4 value=1", 1, "slot=4 out of range"),
        ("cfg.sv slot=0 value=40000", 1, "value=40000 out of range"),
        ("ld.act d3 row=- k=-", 1, "unknown descriptor 'd3'"),
        ('.desc d0 act "x" 4x4\nld.act d0 row=L9 k=-', 2, "L9 out of range"),
        ('.desc d0 act "x" 4x4\nld.act d0 row=L1 k=-', 2, "L1 is not an open loop"),
        ('.desc d0 act "x" 4x4\nst.out d0 row=- col=-', 2, "is act, needs out"),
        ("cfg.kchunk", 1, "one operand"),
        ("cfg.kchunk many", 1, "expected an integer"),
        ("nop\ncfg.mblock rows=0", 2, "rows must be >= 1"),
        ("cfg.mblock", 1, "missing operand rows="),
        ("cfg.mblock rows=65536", 1, "rows=65536 out of range"),
        ('.desc d0 act "x 4x4', 1, "unterminated string"),
    ],
)
def test_assembly_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(IsaError, match=message) as info:
        assemble(text)
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}:")


def test_matmul_program_rejects_bad_arguments() -> None:
    with pytest.raises(IsaError, match="K chunk 100 is not a multiple of the group size 128"):
        matmul_program(
            act="x", weight="w", out="y", m=8, n=8, k=512, fmt="int8", group_size=128, kchunk=100
        )
    with pytest.raises(IsaError, match="blocks of 12 rows must be a multiple of the 8 PE rows"):
        matmul_program(
            act="x", weight="w", out="y", m=8, n=8, k=512, fmt="int8", group_size=128, block_rows=12
        )
    with pytest.raises(IsaError, match="distinct"):
        matmul_program(act="x", weight="x", out="y", m=8, n=8, k=128, fmt="int8", group_size=128)
    with pytest.raises(IsaError, match="unknown weight format"):
        matmul_program(act="x", weight="w", out="y", m=8, n=8, k=128, fmt="nope", group_size=128)


# --- the one description ---------------------------------------------------------------------


def test_docs_instruction_table_is_the_spec_table() -> None:
    """docs/ISA.md's instruction table (written by hand) has the spec's opcodes, mnemonics and
    bit ranges, field by field in order."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "ISA.md").read_text()
    rows = re.findall(r"^\| (0x[0-9a-f]{2}) \| `([a-z.]+)` \| ([^|]*) \|", doc, re.MULTILINE)
    assert len(rows) == len(INSTRUCTION_TYPES)
    for (opcode, mnemonic, fields), instr in zip(rows, INSTRUCTION_TYPES, strict=True):
        assert (int(opcode, 16), mnemonic) == (instr.OPCODE, instr.MNEMONIC)
        ranges = [(int(hi), int(lo)) for hi, lo in re.findall(r"\[(\d+):(\d+)\]", fields)]
        assert ranges == [(f.hi, f.lo) for f in instr.FIELDS], mnemonic


def test_reserved_bits_are_the_bits_no_field_covers() -> None:
    # By hand from docs/ISA.md: cfg.sv uses bits [63:56], [55:54] and [47:32] of its word.
    used = 0xFF << 56 | 0x3 << 54 | 0xFFFF << 32
    assert CfgSv.reserved_mask() == ((1 << 64) - 1) & ~used
    assert Mac.reserved_mask() == (1 << 56) - 1
    for bit in (53, 48, 31, 0):
        with pytest.raises(IsaError, match="reserved bits"):
            decode_word(CfgSv(0, 1).encode() | 1 << bit)


def test_plain_operands_may_be_written_with_their_keyword() -> None:
    plain = assemble(
        '.desc d0 act "x" 8x8\nloop L0 count=1\n  ld.act d0 row=L0 k=-\nendloop L0\ncfg.kchunk 64'
    )
    keyed = assemble(
        '.desc d0 act "x" 8x8\nloop count=1 lvl=L0\n  ld.act k=- row=L0 desc=d0\n'
        "endloop lvl=L0\ncfg.kchunk kc=64"
    )
    assert keyed == plain
