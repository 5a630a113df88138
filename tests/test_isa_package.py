"""bsisa_pkg.sv (backends/rtl/isa_package.py): it parses with the hardware tools, and words
decoded with its field positions (in Python from the parsed localparams, and in an Icarus
testbench) give what ``decode_word`` gives."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from bitmod.backends.rtl.isa_package import PACKAGE_NAME, isa_package
from bitmod.runtime.formats import FORMAT_IDS
from bitmod.runtime.isa import (
    INSTRUCTION_TYPES,
    AccClr,
    CfgArray,
    CfgFmt,
    CfgKchunk,
    CfgMblock,
    CfgSv,
    Drain,
    EndLoop,
    Halt,
    LdAct,
    LdWgt,
    Loop,
    Mac,
    Nop,
    StOut,
    decode_word,
)

# One of each instruction, every optional field both present and absent somewhere.
SAMPLES = [
    Nop(),
    Halt(),
    CfgArray(8, 8, 16),
    CfgSv(1, -3),
    CfgSv(3, 32767),
    CfgFmt(FORMAT_IDS["bitmod3"], 8, 128),
    CfgKchunk(4096),
    CfgMblock(64),
    Loop(5, 32),
    EndLoop(7),
    LdAct(2, 0, None),
    LdWgt(1, 1, 2),
    AccClr(),
    Mac(),
    Drain(None),
    Drain(3),
    StOut(7, None, 3),
]

# A module using the package the way the controller will (bsisa_pkg::NAME, part selects).
USER = """module bsisa_pkg_user (
    input logic [63:0] word,
    output logic is_ld_act,
    output logic [15:0] desc,
    output logic reserved_ok
);
  assign is_ld_act = word[bsisa_pkg::OPCODE_LSB +: bsisa_pkg::OPCODE_W] == bsisa_pkg::OP_LD_ACT;
  assign desc = word[bsisa_pkg::LD_ACT_DESC_LSB +: bsisa_pkg::LD_ACT_DESC_W];
  assign reserved_ok = (word & bsisa_pkg::LD_ACT_RESERVED_MASK) == 64'd0;
endmodule
"""


def sv_value(text: str, params: dict[str, int]) -> int:
    """A localparam's value: decimal, ``N'hX`` / ``N'dX``, or another localparam's name."""
    text = text.strip()
    if text in params:
        return params[text]
    sized = re.fullmatch(r"(\d+)'([hd])([0-9A-Fa-f_]+)", text)
    if sized:
        return int(sized.group(3).replace("_", ""), 16 if sized.group(2) == "h" else 10)
    return int(text)


def localparams(package: str) -> dict[str, int]:
    params: dict[str, int] = {}
    for match in re.finditer(r"localparam [^=]*?(\w+) = ([^;]+);", package):
        params[match.group(1)] = sv_value(match.group(2), params)
    return params


def field_prefix(mnemonic: str, field_name: str) -> str:
    # Written out here (not imported) so the test checks the documented naming.
    return f"{mnemonic.replace('.', '_').upper()}_{field_name.upper()}"


def expected_raw(value: int | None, width: int, none_value: int) -> int:
    return none_value if value is None else value % (1 << width)


def test_hand_checked_constants() -> None:
    params = localparams(isa_package())
    # docs/ISA.md: ld.act desc [55:40], row_lvl [39:36]; cfg.sv value int16 [47:32].
    assert (params["LD_ACT_DESC_LSB"], params["LD_ACT_DESC_W"]) == (40, 16)
    assert (params["LD_ACT_ROW_LVL_LSB"], params["LD_ACT_ROW_LVL_W"]) == (36, 4)
    assert (params["CFG_SV_VALUE_LSB"], params["CFG_SV_VALUE_W"]) == (32, 16)
    assert params["CFG_SV_VALUE_KIND"] == params["FIELD_SIGNED"]
    assert params["LD_WGT_DESC_DESC_KIND"] == params["DESC_KIND_QWEIGHT"] == 2
    assert params["OP_LD_ACT"] == 0x30 and params["OP_ST_OUT"] == 0x50
    assert params["NO_LEVEL"] == 0xF and params["NO_BIAS"] == 0xFFFF
    assert params["MAGIC"].to_bytes(4, "little") == b"BSIS" and params["VERSION"] == 1
    assert params["HEADER_BYTES"] == 24 and params["HEADER_CRC_OFFSET"] == 20
    assert params["DESCRIPTOR_BYTES"] == 32 and params["DESCRIPTOR_DIM0_OFFSET"] == 8
    assert params["FMT_BITMOD3"] == FORMAT_IDS["bitmod3"]
    assert params["NUM_FORMATS"] == len(FORMAT_IDS)
    # cfg.array uses bits [63:24]: the low 24 bits are reserved.
    assert params["CFG_ARRAY_RESERVED_MASK"] == (1 << 24) - 1


def test_package_positions_decode_like_decode_word() -> None:
    params = localparams(isa_package())
    opcodes = {
        instr.MNEMONIC: params[f"OP_{instr.MNEMONIC.replace('.', '_').upper()}"]
        for instr in INSTRUCTION_TYPES
    }
    for instr in SAMPLES:
        word = instr.encode()
        opcode = (word >> params["OPCODE_LSB"]) & ((1 << params["OPCODE_W"]) - 1)
        assert opcodes[instr.MNEMONIC] == opcode
        decoded = decode_word(word)
        mnemonic = decoded.MNEMONIC.replace(".", "_").upper()
        assert word & params[f"{mnemonic}_RESERVED_MASK"] == 0
        for name, value in decoded.values().items():
            prefix = field_prefix(decoded.MNEMONIC, name)
            lsb, width = params[f"{prefix}_LSB"], params[f"{prefix}_W"]
            raw = (word >> lsb) & ((1 << width) - 1)
            none_value = params["NO_BIAS"] if name == "bias" else params["NO_LEVEL"]
            assert raw == expected_raw(value, width, none_value), (instr, name)
            if params[f"{prefix}_KIND"] == params["FIELD_SIGNED"] and raw >> (width - 1):
                raw -= 1 << width
            if value is not None:
                assert raw == value, (instr, name)


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result


def _sources(tmp_path: Path) -> list[str]:
    (tmp_path / f"{PACKAGE_NAME}.sv").write_text(isa_package())
    (tmp_path / "bsisa_pkg_user.sv").write_text(USER)
    return [f"{PACKAGE_NAME}.sv", "bsisa_pkg_user.sv"]


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog is not installed")
def test_package_parses_with_icarus(tmp_path: Path) -> None:
    _run(["iverilog", "-g2012", "-o", "user.vvp", *_sources(tmp_path)], tmp_path)


@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator is not installed")
def test_package_lints_with_verilator(tmp_path: Path) -> None:
    # A package of constants leaves most of them unused by design.
    lint = ["verilator", "--lint-only", "-Wall", "-Wno-UNUSEDPARAM", "-Wno-UNUSEDSIGNAL"]
    _run([*lint, "--top-module", "bsisa_pkg_user", *_sources(tmp_path)], tmp_path)


@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys is not installed")
def test_package_reads_with_yosys(tmp_path: Path) -> None:
    sources = " ".join(_sources(tmp_path))
    _run(
        ["yosys", "-q", "-p", f"read_verilog -sv {sources}; hierarchy -top bsisa_pkg_user"],
        tmp_path,
    )


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog is not installed")
def test_icarus_testbench_decodes_like_decode_word(tmp_path: Path) -> None:
    """Icarus extracts every field of every sample word with the package's positions."""
    body = []
    expected = []
    for n, instr in enumerate(SAMPLES):
        word = instr.encode()
        body.append(f"    w = 64'h{word:016x};")
        mnemonic = instr.MNEMONIC.replace(".", "_").upper()
        body.append(
            f'    $display("{n} op %0d reserved %0d", '
            "w[bsisa_pkg::OPCODE_LSB +: bsisa_pkg::OPCODE_W], "
            f"(w & bsisa_pkg::{mnemonic}_RESERVED_MASK) != 64'd0);"
        )
        expected.append(f"{n} op {instr.OPCODE} reserved 0")
        for name, value in decode_word(word).values().items():
            prefix = f"bsisa_pkg::{field_prefix(instr.MNEMONIC, name)}"
            body.append(
                f'    $display("{n} {name} %0d", '
                f"(w >> {prefix}_LSB) & ((64'd1 << {prefix}_W) - 1));"
            )
            width = next(f.width for f in instr.FIELDS if f.name == name)
            expected.append(
                f"{n} {name} {expected_raw(value, width, 0xFFFF if name == 'bias' else 0xF)}"
            )
    bench = (
        "module tb;\n  logic [63:0] w;\n  initial begin\n"
        + "\n".join(body)
        + "\n  end\nendmodule\n"
    )
    (tmp_path / f"{PACKAGE_NAME}.sv").write_text(isa_package())
    (tmp_path / "tb.sv").write_text(bench)
    _run(["iverilog", "-g2012", "-o", "tb.vvp", f"{PACKAGE_NAME}.sv", "tb.sv"], tmp_path)
    output = _run(["vvp", "-n", "tb.vvp"], tmp_path).stdout.split("\n")
    assert [line.strip() for line in output if line.strip()] == expected
