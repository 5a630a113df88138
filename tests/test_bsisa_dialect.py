"""The bsisa dialect: printing/parsing, verifiers, and the 1:1 mapping onto runtime.isa.Program.

Expected programs come from :func:`bitmod.runtime.arch.nest.matmul_program` and from hand-built
``isa`` instruction lists (an implementation independent of the dialect); expected errors are
the rules of docs/ISA.md.
"""

from __future__ import annotations

import pytest
from bitmod.backends.emit import EmitError, module_to_program, program_to_module
from bitmod.compiler.ir_io import parse_module, print_module
from bitmod.dialects import bsisa
from bitmod.dialects.diagnostics import DiagnosticError
from bitmod.passes.context import make_context
from bitmod.runtime import isa
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import matmul_program
from xdsl.dialects.builtin import ModuleOp

CTX = make_context()


def parse(text: str) -> ModuleOp:
    return parse_module(CTX, text, "test.mlir")


def printed(module: ModuleOp) -> str:
    return print_module(CTX, module)


def program_text(body: str, descs: str | None = None) -> str:
    """A module with one program: ``descs`` (default: x, w, y of a 16x256 @ 192x256 matmul)."""
    if descs is None:
        descs = """
    bsisa.desc @d0 act "x" [16, 256]
    bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
    bsisa.desc @d2 out "y" [16, 192]
    bsisa.desc @d3 bias "b" [192]"""
    return f"bsisa.program @p {{{descs}\n{body}\n    bsisa.halt\n}}"


CONFIG = """
    bsisa.cfg.array rows 8 cols 8 tiles 16
    bsisa.cfg.fmt "bitmod3" sb 8 g 128
    bsisa.cfg.sv slot 0 value 3
    bsisa.cfg.kchunk 128"""

GOOD_NEST = """
    bsisa.loop L0 count 2 {
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.loop L2 count 2 {
          bsisa.ld.act @d0 row L1 k L2
          bsisa.ld.wgt @d1 col L0 k L2
          bsisa.mac
        }
        bsisa.drain bias @d3
        bsisa.st.out @d2 row L1 col L0
      }
    }"""


# --- printing and parsing --------------------------------------------------------------------


def test_every_op_prints_and_parses_back() -> None:
    text = program_text(
        CONFIG
        + """
    bsisa.nop
    bsisa.cfg.sv slot 3 value -8192 {note = "extra attributes survive"}"""
        + GOOD_NEST
    )
    module = parse(text)
    first = printed(module)
    assert printed(parse(first)) == first
    for mnemonic in ("nop", "halt", "acc.clr", "mac", "cfg.kchunk 128", "drain bias @d3"):
        assert f"bsisa.{mnemonic}" in first
    assert 'bsisa.cfg.sv slot 3 value -8192 {note = "extra attributes survive"}' in first
    assert "bsisa.ld.act @d0 row L1 k L2" in first


def test_missing_levels_print_as_dash() -> None:
    program = matmul_program(
        act="x",
        weight="w",
        out="y",
        m=8,
        n=16,
        k=64,
        fmt="int8",
        group_size=32,
        config=HardwareConfig(tiles=2),
        order="weights-resident",
    )
    text = printed(program_to_module(program))
    assert "bsisa.ld.wgt @d1 col L0 k -" in text
    assert "bsisa.ld.act @d0 row L1 k -" in text
    assert printed(parse(text)) == text


def test_loop_with_attributes_keeps_its_region() -> None:
    text = program_text(
        CONFIG
        + """
    bsisa.loop L5 count 1 attributes {tag = 1 : i64} {
      bsisa.nop
    }"""
    )
    first = printed(parse(text))
    assert "bsisa.loop L5 count 1 attributes {tag = 1 : i64} {" in first
    assert printed(parse(first)) == first


# --- the mapping onto runtime.isa.Program ----------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "special_values", "kchunk", "bias", "tiles"),
    [
        ("bitmod3", (3, -3, 6, -6), None, "b", 16),
        ("bitmod4", (10, -10, 16, -16), 128, None, 4),
        ("int4_asym", (), 256, "b", 1),
        ("fp3_ea_neg", (-6,), None, None, 2),
    ],
)
def test_program_round_trips_through_ir(
    fmt: str, special_values: tuple[int, ...], kchunk: int | None, bias: str | None, tiles: int
) -> None:
    program = matmul_program(
        act="x",
        weight="layer.weight",
        out="y",
        m=40,
        n=300,
        k=512,
        fmt=fmt,
        group_size=128,
        special_values=special_values,
        config=HardwareConfig(tiles=tiles),
        kchunk=kchunk or 0,
        bias=bias,
    )
    module = program_to_module(program)
    module.verify()
    reparsed = parse(printed(module))
    assert module_to_program(reparsed) == program
    assert module_to_program(reparsed).encode() == program.encode()
    # The IR counts what the binary holds.
    assert bsisa.instruction_count(list(bsisa.ops_from_isa(program.instructions, str))) == len(
        program.instructions
    )


def test_binary_to_ir_and_back_is_byte_identical() -> None:
    binary = matmul_program(
        act="a",
        weight="w",
        out="o",
        m=9,
        n=129,
        k=256,
        fmt="bitmod3",
        group_size=64,
        special_values=(3, -3, 6, -6),
        kchunk=128,
        block_rows=16,
    ).encode()
    module = parse(printed(program_to_module(isa.Program.decode(binary))))
    assert module_to_program(module).encode() == binary


def test_hand_built_program_maps_instruction_for_instruction() -> None:
    # Two layers chained through "h" (out of the first, act of the second), written with
    # runtime.isa dataclasses, the second layer without loops over K.
    program = isa.Program(
        ("x", "w1", "h", "w2", "y"),
        (
            isa.Descriptor(0, isa.DescKind.ACT, 8, 64),
            isa.Descriptor(1, isa.DescKind.QWEIGHT, 16, 64, isa.format_id("int8"), 8, 32),
            isa.Descriptor(2, isa.DescKind.OUT, 8, 16),
            isa.Descriptor(2, isa.DescKind.ACT, 8, 16),
            isa.Descriptor(3, isa.DescKind.QWEIGHT, 4, 16, isa.format_id("int4"), 4, 16),
            isa.Descriptor(4, isa.DescKind.OUT, 8, 4),
        ),
        (
            isa.CfgArray(8, 8, 1),
            isa.CfgFmt(isa.format_id("int8"), 8, 32),
            isa.CfgKchunk(32),
            isa.Loop(3, 2),
            isa.Loop(6, 1),
            isa.AccClr(),
            isa.Loop(1, 2),
            isa.LdAct(0, 6, 1),
            isa.LdWgt(1, 3, 1),
            isa.Mac(),
            isa.EndLoop(1),
            isa.Drain(None),
            isa.StOut(2, 6, 3),
            isa.EndLoop(6),
            isa.EndLoop(3),
            isa.CfgArray(8, 8, 1),
            isa.CfgFmt(isa.format_id("int4"), 4, 16),
            isa.CfgKchunk(16),
            isa.AccClr(),
            isa.LdAct(3, None, None),
            isa.LdWgt(4, None, None),
            isa.Mac(),
            isa.Drain(),
            isa.StOut(5, None, None),
            isa.Nop(),
            isa.Halt(),
        ),
    )
    program.validate()
    module = program_to_module(program)
    module.verify()
    ops = bsisa_code(module)
    assert [type(op).__name__ for op in ops] == [
        "CfgArrayOp",
        "CfgFmtOp",
        "CfgKchunkOp",
        "LoopOp",
        "CfgArrayOp",
        "CfgFmtOp",
        "CfgKchunkOp",
        "AccClrOp",
        "LdActOp",
        "LdWgtOp",
        "MacOp",
        "DrainOp",
        "StOutOp",
        "NopOp",
        "HaltOp",
    ]
    program_op = bsisa_program(module)
    assert program_op.segments() == [0, 4]
    assert [d.tensor.data for d in program_op.descriptors] == ["x", "w1", "h", "h", "w2", "y"]
    assert module_to_program(parse(printed(module))) == program


def test_explicit_string_table_is_kept() -> None:
    # A string table that is not the descriptors' names in first-use order (an unused name
    # and another order) round-trips through the `strings` property.
    base = matmul_program(act="x", weight="w", out="y", m=8, n=8, k=32, fmt="int8", group_size=32)
    strings = ("unused", "y", "w", "x")
    renumber = {0: 3, 1: 2, 2: 1}
    program = isa.Program(
        strings,
        tuple(
            isa.Descriptor(
                renumber[d.name], d.kind, d.dim0, d.dim1, d.fmt, d.scale_bits, d.group_size
            )
            for d in base.descriptors
        ),
        base.instructions,
    )
    text = printed(program_to_module(program))
    assert 'strings ["unused", "y", "w", "x"]' in text
    assert module_to_program(parse(text)) == program


def test_unbalanced_instruction_stream_is_rejected() -> None:
    with pytest.raises(isa.IsaError, match="never closed"):
        bsisa.ops_from_isa([isa.Loop(0, 2), isa.Mac()], str)
    with pytest.raises(isa.IsaError, match="instruction 1: endloop L1 closes no open loop"):
        bsisa.ops_from_isa([isa.Loop(0, 2), isa.EndLoop(1)], str)


def test_emit_needs_exactly_one_program() -> None:
    with pytest.raises(EmitError, match="no bsisa.program"):
        module_to_program(ModuleOp([]))
    two = ModuleOp([bsisa.ProgramOp("a", [bsisa.HaltOp()]), bsisa.ProgramOp("b", [bsisa.HaltOp()])])
    with pytest.raises(EmitError, match="2 bsisa.program ops"):
        module_to_program(two)


def bsisa_program(module: ModuleOp) -> bsisa.ProgramOp:
    (program,) = [op for op in module.ops if isinstance(op, bsisa.ProgramOp)]
    return program


def bsisa_code(module: ModuleOp) -> list[bsisa.InstructionOp]:
    return bsisa_program(module).code


# --- verifiers -------------------------------------------------------------------------------


def test_good_program_verifies() -> None:
    module = parse(program_text(CONFIG + GOOD_NEST))
    assert bsisa.instruction_count(bsisa_code(module)) == 4 + 3 * 2 + 6 + 1
    # A load without a K level holds all of K (both K chunks of 128), here one block of all
    # 16 rows (cfg.mblock) that the weight chunks stream past.
    acts_resident = """
    bsisa.cfg.mblock 16
    bsisa.ld.act @d0 row - k -
    bsisa.loop L0 count 2 {
      bsisa.acc.clr
      bsisa.loop L1 count 2 {
        bsisa.ld.wgt @d1 col L0 k L1
        bsisa.mac
      }
      bsisa.drain
      bsisa.st.out @d2 row - col L0
    }"""
    module = parse(program_text(CONFIG + acts_resident))
    assert "bsisa.cfg.mblock 16" in printed(module)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # field ranges (docs/ISA.md bit widths, checked by runtime.isa)
        (CONFIG + "\n bsisa.cfg.sv slot 4 value 1", "field slot=4 out of range"),
        (CONFIG + "\n bsisa.cfg.sv slot 0 value 40000", "field value=40000 out of range"),
        (CONFIG + "\n bsisa.cfg.sv slot 0 value -32769", "field value=-32769 out of range"),
        ("bsisa.cfg.array rows 0 cols 8 tiles 1", "rows/cols/tiles must be >= 1"),
        ("bsisa.cfg.array rows 8 cols 256 tiles 1", "field cols=256 out of range"),
        ('bsisa.cfg.fmt "bitmod3" sb 0 g 128', "scale bits must be >= 1"),
        ('bsisa.cfg.fmt "bitmod3" sb 16 g 128', "field sb=16 out of range"),
        ('bsisa.cfg.fmt "bitmod3" sb 8 g 6', "group size 6 must be a multiple of 4"),
        ('bsisa.cfg.fmt "bitmod9" sb 8 g 128', "unknown weight format 'bitmod9'"),
        ("bsisa.cfg.kchunk 0", "kc must be >= 1"),
        ("bsisa.cfg.kchunk 4294967296", "field kc=4294967296 out of range"),
        ("bsisa.loop L8 count 1 {\n}", "loop level 8 not in [0, 7]"),
        ("bsisa.loop L0 count 0 {\n}", "count must be >= 1"),
        # loop structure
        ("bsisa.loop L1 count 2 {\n bsisa.loop L1 count 2 {\n }\n}", "level L1 is already used"),
        (CONFIG + "\n bsisa.ld.act @d0 row L3 k -", "level L3 is not an enclosing loop"),
        ("bsisa.loop L0 count 1 {\n bsisa.halt\n}", "bsisa.halt cannot appear in a loop body"),
        # state and references
        ("bsisa.mac", "bsisa.mac before any cfg.array"),
        ("bsisa.cfg.array rows 8 cols 8 tiles 16\n bsisa.mac", "bsisa.mac before any cfg.fmt"),
        (
            CONFIG + "\n bsisa.loop L0 count 2 {\n bsisa.ld.act @nope row L0 k -\n }",
            "unknown descriptor @nope",
        ),
        (
            CONFIG + "\n bsisa.loop L0 count 2 {\n bsisa.ld.act @d1 row L0 k -\n }",
            "@d1 is a qweight, expected a act",
        ),
        (CONFIG + "\n bsisa.drain bias @d0", "@d0 is a act, not a bias"),
        # coverage: ceil(16/8) = 2 row blocks, ceil(192/128) = 2 column blocks, ceil(256/128)
        # = 2 K chunks
        (
            CONFIG + "\n bsisa.loop L0 count 3 {\n bsisa.ld.act @d0 row L0 k -\n }",
            "row loop L0 runs 3 times but 16 elements in blocks of 8 need 2",
        ),
        (
            CONFIG
            + "\n bsisa.cfg.mblock 16\n bsisa.loop L0 count 2 {\n bsisa.ld.act @d0 row L0 k -\n }",
            "row loop L0 runs 2 times but 16 elements in blocks of 16 need 1",
        ),
        (
            CONFIG + "\n bsisa.cfg.mblock 12",
            "blocks of 12 rows must be a multiple of the 8 PE rows",
        ),
        ("bsisa.cfg.mblock 16", "bsisa.cfg.mblock before any cfg.array"),
        (CONFIG + "\n bsisa.cfg.mblock 0", "rows must be >= 1"),
        (CONFIG + "\n bsisa.cfg.mblock 65536", "field rows=65536 out of range"),
        (
            CONFIG + "\n bsisa.loop L0 count 2 {\n bsisa.st.out @d2 row L0 col -\n }",
            "col has no loop but 192 elements need 2 blocks of 128",
        ),
        (
            'bsisa.cfg.array rows 8 cols 8 tiles 16\n bsisa.cfg.fmt "int4" sb 8 g 128\n'
            " bsisa.cfg.kchunk 256\n bsisa.loop L0 count 2 {\n bsisa.ld.wgt @d1 col L0 k -\n }",
            "@d1 is fmt=bitmod3 sb=8 g=128 but cfg.fmt set fmt=int4 sb=8 g=128",
        ),
        (
            'bsisa.cfg.array rows 8 cols 8 tiles 16\n bsisa.cfg.fmt "bitmod3" sb 8 g 128\n'
            " bsisa.cfg.kchunk 192\n bsisa.mac",
            "K chunk 192 is not a multiple of the group size 128",
        ),
    ],
)
def test_program_verifier_rejects(body: str, message: str) -> None:
    with pytest.raises(DiagnosticError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(program_text(body))


def test_loop_nest_is_at_most_eight_deep() -> None:
    eight = "bsisa.nop"
    for level in range(8):
        eight = f"bsisa.loop L{level} count 1 {{\n{eight}\n}}"
    parse(program_text(eight))  # 8 levels: fine
    nine = f"bsisa.loop L0 count 1 {{\n{eight}\n}}"
    with pytest.raises(DiagnosticError, match="already used by an enclosing loop|deeper than 8"):
        parse(program_text(nine))


@pytest.mark.parametrize(
    ("descs", "body", "message"),
    [
        ('\n bsisa.desc @d0 act "x" [8]', "", "a act descriptor is 2-D"),
        ('\n bsisa.desc @d0 bias "b" [8, 1]', "", "a bias descriptor is 1-D"),
        ('\n bsisa.desc @d0 qweight "w" [8, 8]', "", "a qweight descriptor needs fmt, sb and g"),
        ('\n bsisa.desc @d0 act "x" [8, 8] fmt "int8"', "", "belong to qweight descriptors only"),
        ('\n bsisa.desc @d0 weights "x" [8, 8]', "", "unknown kind 'weights'"),
        ('\n bsisa.desc @d0 act "x" [0, 8]', "", r"dims 0x8 must be in \[1, 2\^32\)"),
        ('\n bsisa.desc @d0 qweight "w" [8, 8] fmt "int8" sb 0 g 8', "", "scale bits 0 not in"),
        (
            '\n bsisa.desc @d0 act "x" [8, 8]\n bsisa.desc @d0 out "y" [8, 8]',
            "",
            'Redefinition of symbol "d0"',
        ),
        (
            '\n bsisa.desc @d0 act "x" [8, 8]',
            'bsisa.nop\n bsisa.desc @d1 act "z" [8, 8]',
            "descriptor @d1 after the first instruction",
        ),
    ],
)
def test_descriptor_verifier_rejects(descs: str, body: str, message: str) -> None:
    with pytest.raises(DiagnosticError, match=message):
        parse(program_text(body, descs))


def test_program_must_end_with_halt() -> None:
    with pytest.raises(DiagnosticError, match="must end with bsisa.halt"):
        parse("bsisa.program @p {\n bsisa.nop\n}")


def test_instructions_live_in_a_program_or_tiled_matmul() -> None:
    with pytest.raises(DiagnosticError, match="must be inside a bsisa.program"):
        parse("func.func @f() {\n bsisa.mac\n func.return\n}")


# --- tiled matmul and launch -----------------------------------------------------------------

QTYPE = "!bitmod.qweight<192x256, bitmod3, 128>"
TILED = (
    f"func.func @f(%x: tensor<16x256xf32>, %q: {QTYPE}) -> tensor<16x192xf32> {{\n"
    "  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, "
    "block_rows = 8, kc = KC, act_kc = AKC, m_blocks = 2, n_blocks = 2, k_chunks = CHUNKS, "
    "act_block_bytes = ACT, "
    f"weight_block_bytes = WGT> : (tensor<16x256xf32>, {QTYPE}) -> tensor<16x192xf32> {{\n"
    """    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act ACTREF row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}
"""
)


def tiled(**fields: str) -> str:
    # Block sizes for K chunk 256: act 8 x 256 x 2 = 4096 B; weight 128 channels x (96 B
    # codes + ceil(2 x 10 / 8) = 3 B group metadata + 2 B channel scale) = 12928 B.
    values = {"KC": "256", "CHUNKS": "1", "ACT": "4096", "WGT": "12928", "ACTREF": "@act"}
    values.update(fields)
    values.setdefault("AKC", values["KC"])
    text = TILED
    for key in sorted(values, key=len, reverse=True):
        text = text.replace(key, values[key])
    return text


def test_tiled_matmul_round_trips() -> None:
    first = printed(parse(tiled()))
    assert printed(parse(first)) == first
    assert "bsisa.ld.act @act row L1 k -" in first


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"CHUNKS": "2"}, "tiling k_chunks = 2, expected 1 for M=16 N=192 K=256"),
        (
            {"KC": "192", "CHUNKS": "2", "ACT": "3072"},
            "K chunk 192 is not a multiple of the group size 128",
        ),
        ({"WGT": "12864"}, "weight_block_bytes = 12864, but a block of this matmul takes 12928"),
        ({"ACT": "100"}, "act_block_bytes = 100, but a block of this matmul takes 4096"),
        ({"AKC": "128"}, "tiling act_kc = 128 is neither kc = 256 nor K = 256"),
        ({"ACTREF": "@bias"}, "@bias is not a role of this tiled matmul"),
        ({"ACTREF": "@weight"}, "@weight is a qweight, expected a act"),
    ],
)
def test_tiled_matmul_verifier_rejects(fields: dict[str, str], message: str) -> None:
    with pytest.raises(DiagnosticError, match=message):
        parse(tiled(**fields))


def test_tiled_matmul_rejects_config_in_its_schedule() -> None:
    text = tiled().replace("bsisa.acc.clr", "bsisa.acc.clr\n bsisa.cfg.kchunk 256")
    with pytest.raises(DiagnosticError, match="must be inside a bsisa.program"):
        parse(text)


LAUNCH = """
func.func @f(%x: tensor<16x256xf32>) -> tensor<16x192xf32> {
  %y = bsisa.launch @p[SEG] act @d0(%x) out OUT : (tensor<16x256xf32>) -> tensor<16x192xf32>
  func.return %y : tensor<16x192xf32>
}
"""


def launch_module(segment: str = "0", out: str = "@d2") -> str:
    program = program_text(CONFIG + GOOD_NEST)
    return LAUNCH.replace("SEG", segment).replace("OUT", out) + program


def test_launch_round_trips() -> None:
    first = printed(parse(launch_module()))
    assert "bsisa.launch @p[0] act @d0(%x) out @d2" in first
    assert printed(parse(first)) == first


@pytest.mark.parametrize(
    ("segment", "out", "message"),
    [
        ("1", "@d2", "segment 1 out of range; @p has 1 segments"),
        ("0", "@d0", "@d0 is not a out descriptor of @p"),
    ],
)
def test_launch_verifier_rejects(segment: str, out: str, message: str) -> None:
    with pytest.raises(DiagnosticError, match=message):
        parse(launch_module(segment, out))


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        (program_text("bsisa.cfg.kchunk 99999999999999999999"), "does not fit 64 bits", 18),
        (program_text("bsisa.loop L12345 count 1 {\n}"), "expected a loop level L0..L7", 12),
        (program_text("bsisa.loop X1 count 1 {\n}"), "expected a loop level L0..L7", 12),
        (program_text(CONFIG + "\n bsisa.ld.act @d0 row - k"), "expected a loop level", 0),
        (tiled().replace("tiles = 16", "tiles = 0"), "bsisa.tiling: tiles must be positive", 0),
        (tiled().replace("m_blocks = 2, ", ""), "bsisa.tiling: missing m_blocks", 0),
        (
            tiled().replace("block_rows = 8", "block_rows = 12"),
            "bsisa.tiling: blocks of 12 rows must be a multiple of the 8 PE rows",
            0,
        ),
    ],
)
def test_malformed_syntax_is_a_located_parse_error(text: str, message: str, column: int) -> None:
    with pytest.raises(DiagnosticError, match=message) as error:
        parse(text)
    location = error.value.location
    assert location is not None and location.file == "test.mlir" and location.line > 0
    if column:
        assert location.column == column


def test_instruction_ops_are_the_isa_table() -> None:
    """One op per ISA instruction (endloop: the end of a bsisa.loop region), with one property
    per field, named as the field, optional exactly where the field may be none."""
    by_type = {op.ISA_TYPE: op for op in bsisa.INSTRUCTION_OPS}
    assert set(by_type) == set(isa.INSTRUCTION_TYPES) - {isa.EndLoop}
    for isa_type, op_type in by_type.items():
        properties = op_type.get_irdl_definition().properties
        assert list(properties) == [f.name for f in isa_type.FIELDS], op_type.name
        for field in isa_type.FIELDS:
            optional = type(properties[field.name]).__name__.startswith("Opt")
            assert optional == field.optional, (op_type.name, field.name)
        assert op_type.name == f"bsisa.{isa_type.MNEMONIC}"
