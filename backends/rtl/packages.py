"""Generated SystemVerilog packages: the weight formats and the hardware configuration.

Nothing in these packages is typed by hand. ``format_package()`` describes every format id of
:data:`bitmod.runtime.formats.FORMAT_IDS` as the term encoder needs it, derived by running the
Python term decoder (:func:`bitmod.runtime.formats.bitserial.decode_codes`) on every code:

* ``KIND_INT``: codes decode to their two's complement value (symmetric INT);
* ``KIND_INT_ASYM``: codes decode to themselves and the machine subtracts the zero point;
* ``KIND_LOD``: sign-magnitude codes (FP3/FP4 and their ER/EA extensions); the magnitude table
  of the positive codes, and whether the negative-zero code reads the SV register (found by
  decoding with a sentinel register);
* ``KIND_NONE``: no bit-serial lowering (the controller refuses it).

and, per format, the largest term-magnitude sum of one weight of its own grid
(``TERM_SUM``, :func:`bitmod.runtime.formats.bitserial.max_term_sum`) with the group
accumulator's bound (``GROUP_TERM_LIMIT``, :func:`bitmod.runtime.arch.rules.accumulator_error`):
a leading-one weight's terms are its set bits, so they sum to its magnitude, and a programmed
special value ``v`` adds a weight of ``|v|``. The controller refuses a ``mac`` whose
``G · max(TERM_SUM[fmt], max |SV|) > GROUP_TERM_LIMIT`` (``max |SV|`` only for a format that
reads the register), which is the emulator's rule.

``config_package(config)`` turns a :class:`~bitmod.runtime.arch.hwconfig.HardwareConfig` into
localparams: the array geometry, buffer sizes, accumulator depth, the row groups a mac may
split its passes over (``ROW_GROUPS``, ``HardwareConfig.row_groups``) and the DRAM bandwidth
as an exact fraction ``DRAM_NUM / DRAM_DEN`` bytes per cycle (a transfer of ``n`` bytes takes
``ceil(n * DRAM_DEN / DRAM_NUM)`` cycles, as in the emulator's timing model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.rules import GROUP_TERM_LIMIT
from bitmod.runtime.arch.timing import MAC_PIPELINE_CYCLES, dram_fraction
from bitmod.runtime.arch.trace import REGIONS
from bitmod.runtime.formats import FORMAT_IDS, get_format
from bitmod.runtime.formats.bitserial import decode_codes, encoding, max_term_sum, num_terms

__all__ = [
    "DESC_FIELDS",
    "FormatDescriptor",
    "config_package",
    "format_descriptor",
    "format_package",
    "term_sum",
]

KIND_NONE, KIND_INT, KIND_INT_ASYM, KIND_LOD = range(4)
MAGNITUDE_ENTRIES, MAGNITUDE_BITS = 8, 5

#: Fields of a format descriptor word: name -> (low bit, width).
DESC_FIELDS: dict[str, tuple[int, int]] = {
    "KIND": (0, 2),
    "BITS": (2, 4),
    "SV": (6, 1),
    "INDEX_BITS": (7, 2),
    "MIN_TERMS": (9, 4),
    "MAGNITUDES": (13, MAGNITUDE_ENTRIES * MAGNITUDE_BITS),
}
DESC_WIDTH = 56
TERM_SUM_BITS = 16
_SENTINEL = 12345  # an SV register value no format's grid holds


@dataclass(frozen=True)
class FormatDescriptor:
    """What the term encoder needs to know about one format."""

    kind: int
    bits: int
    sv_enable: bool
    index_bits: int
    min_terms: int
    magnitudes: tuple[int, ...]  # grid magnitude of each positive code (KIND_LOD)

    def word(self) -> int:
        values = {
            "KIND": self.kind,
            "BITS": self.bits,
            "SV": int(self.sv_enable),
            "INDEX_BITS": self.index_bits,
            "MIN_TERMS": self.min_terms,
            "MAGNITUDES": sum(m << (MAGNITUDE_BITS * i) for i, m in enumerate(self.magnitudes)),
        }
        word = 0
        for name, (low, width) in DESC_FIELDS.items():
            assert 0 <= values[name] < 1 << width, (name, values[name])
            word |= values[name] << low
        return word


def format_descriptor(name: str) -> FormatDescriptor:
    """The descriptor of format ``name``; ValueError if the encoder cannot implement it."""
    fmt = get_format(name)
    if not fmt.accelerated:
        return FormatDescriptor(KIND_NONE, fmt.bits, False, 0, 0, ())
    codes = np.arange(1 << fmt.bits)
    plain = decode_codes(fmt, codes, 0)
    probe = decode_codes(fmt, codes, 0, (_SENTINEL,) * 4)
    reads_register = probe == _SENTINEL
    if encoding(fmt) == "booth":
        twos = np.where(codes < 1 << (fmt.bits - 1), codes, codes - (1 << fmt.bits))
        if np.array_equal(plain, codes):
            kind = KIND_INT_ASYM
        elif np.array_equal(plain[np.isfinite(plain)], twos[np.isfinite(plain)]):
            kind = KIND_INT
        else:
            raise ValueError(f"{name}: Booth codes are neither two's complement nor unsigned")
        return FormatDescriptor(kind, fmt.bits, False, fmt.index_bits, num_terms(fmt), ())
    half = 1 << (fmt.bits - 1)
    magnitudes = plain[:half]
    mirrored = np.concatenate([magnitudes, -magnitudes])
    ordinary = ~reads_register
    if (
        len(magnitudes) > MAGNITUDE_ENTRIES
        or np.any(magnitudes < 0)
        or np.any(magnitudes >= 1 << MAGNITUDE_BITS)
        or not np.array_equal(plain[ordinary], mirrored[ordinary])
        or not np.array_equal(np.flatnonzero(reads_register), [half] * int(reads_register.any()))
    ):
        raise ValueError(f"{name}: not a sign-magnitude grid the LOD encoder implements")
    return FormatDescriptor(
        KIND_LOD,
        fmt.bits,
        bool(reads_register.any()),
        fmt.index_bits,
        num_terms(fmt),
        tuple(int(m) for m in magnitudes),
    )


def term_sum(name: str) -> int:
    """``TERM_SUM`` of format ``name``: the largest ``Σ_t |t|`` of one weight of its grid (every
    Booth input of its width, or every grid magnitude), 0 for a format without a lowering."""
    return max_term_sum(name) if get_format(name).accelerated else 0


def _header(title: str) -> str:
    return f"// {title}\n// GENERATED by bitmod.backends.rtl.packages: do not edit.\n"


def format_package() -> str:
    """``bitmod_fmt_pkg``: one descriptor per format id."""
    names = sorted(FORMAT_IDS, key=FORMAT_IDS.__getitem__)
    assert [FORMAT_IDS[n] for n in names] == list(range(len(names)))
    lines = [
        _header("Weight formats, one descriptor per cfg.fmt format id."),
        "package bitmod_fmt_pkg;",
        f"  localparam int N_FORMATS = {len(names)};",
        f"  localparam int DESC_W = {DESC_WIDTH};",
        f"  localparam int KIND_NONE = {KIND_NONE};",
        f"  localparam int KIND_INT = {KIND_INT};",
        f"  localparam int KIND_INT_ASYM = {KIND_INT_ASYM};",
        f"  localparam int KIND_LOD = {KIND_LOD};",
    ]
    for field, (low, width) in DESC_FIELDS.items():
        lines.append(f"  localparam int {field}_LO = {low};  // {width} bit(s)")
    lines.append("  // format id i is DESC[i*DESC_W +: DESC_W]")
    lines.append("  localparam logic [N_FORMATS*DESC_W-1:0] DESC = {")
    for position, name in enumerate(reversed(names)):
        word = format_descriptor(name).word()
        comma = "," if position < len(names) - 1 else " "
        digits = DESC_WIDTH // 4
        lines.append(f"    {DESC_WIDTH}'h{word:0{digits}x}{comma}  // {FORMAT_IDS[name]:3d} {name}")
    lines += [
        "  };",
        "  // the group accumulator's bound (runtime/arch/rules.py): G * max sum of |terms| of a",
        "  // weight; format id i's own largest sum is TERM_SUM[i*TERM_SUM_W +: TERM_SUM_W]",
        f"  localparam int GROUP_TERM_LIMIT = {GROUP_TERM_LIMIT};",
        "  // regions of an operand buffer, each holding a tag (runtime/arch/trace.py)",
        f"  localparam int BUFFER_REGIONS = {REGIONS};",
        f"  localparam int TERM_SUM_W = {TERM_SUM_BITS};",
        "  localparam logic [N_FORMATS*TERM_SUM_W-1:0] TERM_SUM = {",
    ]
    for position, name in enumerate(reversed(names)):
        value = term_sum(name)
        assert 0 <= value < 1 << TERM_SUM_BITS, (name, value)
        comma = "," if position < len(names) - 1 else " "
        lines.append(f"    {TERM_SUM_BITS}'d{value}{comma}  // {FORMAT_IDS[name]:3d} {name}")
    lines += ["  };", "endpackage"]
    return "\n".join(lines) + "\n"


def config_package(config: HardwareConfig) -> str:
    """``bitmod_cfg_pkg``: the machine ``config`` describes."""
    num, den = dram_fraction(config.dram_bytes_per_cycle)
    values = {
        "ROWS": config.rows,
        "COLS": config.cols,
        "TILES": config.tiles,
        "ACT_BUFFER_BYTES": config.act_buffer_bytes,
        "WEIGHT_BUFFER_BYTES": config.weight_buffer_bytes,
        "MAX_BLOCK_ROWS": config.max_block_rows,
        "ROW_GROUPS": config.row_groups,
        "DRAM_NUM": num,
        "DRAM_DEN": den,
        "MAC_PIPELINE_CYCLES": MAC_PIPELINE_CYCLES,
    }
    lines = [
        _header("Hardware configuration (bitmod.runtime.arch.hwconfig.HardwareConfig)."),
        "package bitmod_cfg_pkg;",
    ]
    for name, value in values.items():
        if not 0 < value < 1 << 31:
            raise ValueError(
                f"the RTL holds {name} in a 32-bit int: {value} does not fit (HardwareConfig)"
            )
        lines.append(f"  localparam int {name} = {value};")
    lines.append("endpackage")
    return "\n".join(lines) + "\n"
