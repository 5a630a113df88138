"""bitmod.runtime.formats: the registry, Algorithm 1 and the other quantizers.

Three kinds of evidence, none of them the code's own output:

* the registry against docs/formats.md's grids typed in again (``reference_quant``);
* hand-worked groups (small group sizes, arithmetic in the comments), one per family;
* the plain slow reference ``runtime/formats/reference_quant.py`` on random groups.

Scales are chosen as powers of two in the hand-worked groups so every ``w / s`` is exact and the
expected dequantized values can be written down exactly. ``scale_bits=None`` (FP16 scales) unless
the test is about the second-level INT scale.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from bitmod.runtime.formats import (
    FORMAT_IDS,
    FORMAT_NAMES,
    QuantizedTensor,
    dequantize,
    get_format,
    quantize,
)
from bitmod.runtime.formats import reference_quant as ref


def q_of(rows: list[list[float]], fmt: str, group_size: int | None, scale_bits=None):
    return quantize(
        torch.tensor(rows, dtype=torch.float32), fmt, group_size=group_size, scale_bits=scale_bits
    )


def assert_q(q: QuantizedTensor, codes, dequantized, scales=None, sv=None) -> None:
    assert q.codes.tolist() == codes
    assert dequantize(q).tolist() == dequantized
    if scales is not None:
        assert q.group_scale().tolist() == scales
    if sv is not None:
        assert q.sv_index.tolist() == sv


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

ISSUE_NAMES = (
    [f"int{b}" for b in range(3, 9)]
    + [f"int{b}_asym" for b in range(3, 9)]
    + ["fp3", "fp3_er_pos", "fp3_er_neg", "fp3_ea_pos", "fp3_ea_neg"]
    + ["fp4", "fp4_er_pos", "fp4_er_neg", "fp4_ea_pos", "fp4_ea_neg"]
    + ["fp5_e2m2", "fp5_e3m1", "fp6_e2m3", "fp6_e3m2", "flint4", "flint5"]
    + ["bitmod3", "bitmod4", "fp3_er", "fp3_ea", "fp4_er", "fp4_ea", "ant3", "ant4"]
    + ["mxfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2", "mxint8", "olive4"]
)


def test_every_issue_format_is_registered_with_a_unique_stable_id() -> None:
    assert set(ISSUE_NAMES) <= set(FORMAT_NAMES)
    assert sorted(FORMAT_IDS.values()) == list(range(len(FORMAT_NAMES)))
    assert all(get_format(name).name == name for name in FORMAT_NAMES)


def test_unknown_format_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown data type 'fp7'") as info:
        get_format("fp7")
    assert "bitmod3" in str(info.value) and "mxfp8_e4m3" in str(info.value)
    with pytest.raises(ValueError, match="valid names"):
        quantize(torch.ones(1, 128), "int2")


@pytest.mark.parametrize("name", list(ref.SYMMETRIC_SINGLE))
def test_code_tables_match_formats_md(name: str) -> None:
    fmt = get_format(name)
    expected = [math.nan if v is None else v for v in ref.code_table(name)]
    np.testing.assert_array_equal(fmt.code_values, np.array(expected))
    assert fmt.grid.tolist() == ref.grid_of(name)
    assert fmt.max_value == max(abs(v) for v in ref.grid_of(name))
    if name in ref.EXTENDED:
        assert fmt.special_code == 1 << (fmt.bits - 1)
        assert fmt.special_values == (ref.EXTENDED[name][1],)


def test_formats_md_maxima() -> None:
    # The "max" column of docs/formats.md's grid tables.
    maxima = {
        "int3": 3,
        "fp3": 4,
        "fp3_er_pos": 4,
        "fp3_ea_pos": 6,
        "int4": 7,
        "fp4": 12,
        "fp4_er_neg": 12,
        "fp4_ea_neg": 16,
        "flint4": 16,
        "int5": 15,
        "fp5_e2m2": 28,
        "fp5_e3m1": 192,
        "flint5": 64,
        "int6": 31,
        "fp6_e2m3": 60,
        "fp6_e3m2": 448,
    }
    assert {name: get_format(name).max_value for name in maxima} == maxima


@pytest.mark.parametrize("name", list(ref.MIXTURES))
def test_mixture_candidates_and_special_values(name: str) -> None:
    fmt = get_format(name)
    assert fmt.family == "mixture"
    assert fmt.candidates == ref.MIXTURES[name]
    assert fmt.grid.tolist() == ref.grid_of(name)
    if name.startswith("ant"):
        assert fmt.special_values == ()
    else:
        assert fmt.special_values == tuple(ref.EXTENDED[m][1] for m in fmt.candidates)
        assert math.isnan(fmt.code_values[fmt.special_code])
    assert fmt.index_bits == (2 if len(fmt.candidates) == 4 else 1)


def test_bitmod_special_value_registers() -> None:
    assert get_format("bitmod3").special_values == (3, -3, 6, -6)
    assert get_format("bitmod4").special_values == (10, -10, 16, -16)


def test_mx_element_grids_are_the_fp_grids() -> None:
    # In units of the element's least subnormal the MX FP elements are the plain FP grids.
    for mx, plain in (("mxfp4", "fp4"), ("mxfp6_e2m3", "fp6_e2m3"), ("mxfp6_e3m2", "fp6_e3m2")):
        assert set(get_format(mx).grid.tolist()) == set(get_format(plain).grid.tolist())
        assert get_format(mx).block_size == 32
    # E4M3: 0..448 with 480 the NaN code; E5M2: max normal 57344 with the top exponent reserved.
    e4m3 = get_format("mxfp8_e4m3")
    assert e4m3.max_value * e4m3.grid_unit == 448
    assert np.isnan(e4m3.code_values[0x7F]) and np.isnan(e4m3.code_values[0xFF])
    e5m2 = get_format("mxfp8_e5m2")
    assert e5m2.max_value * e5m2.grid_unit == 57344
    assert int(np.isnan(e5m2.code_values).sum()) == 8  # exponent 11111, both signs, 4 mantissas
    mxint8 = get_format("mxint8")
    assert mxint8.max_value * mxint8.grid_unit == 2.0  # -128/64 exists, quantization uses ±127


# ----------------------------------------------------------------------------------------------
# Hand-worked groups, one (or more) per family
# ----------------------------------------------------------------------------------------------


def test_int_sym_hand_worked() -> None:
    # absmax 0.75, max|grid| 3  ->  s = 0.25;  x = w / s = [1.5, -3, 2.25, 0.5, -1.5, -0.5, 0, 2.75]
    # nearest, ties to the lower value: 1.5 -> 1, 0.5 -> 0, -1.5 -> -2, -0.5 -> -1, 2.75 -> 3
    # two's complement 3-bit codes: 1, -3=101b=5, 2, 0, -2=110b=6, -1=111b=7, 0, 3
    q = q_of([[0.375, -0.75, 0.5625, 0.125, -0.375, -0.125, 0.0, 0.6875]], "int3", 8)
    assert_q(
        q,
        [[1, 5, 2, 0, 6, 7, 0, 3]],
        [[0.25, -0.75, 0.5, 0.0, -0.5, -0.25, 0.0, 0.75]],
        scales=[[0.25]],
        sv=[[0]],
    )


def test_int_asym_hand_worked() -> None:
    # min -1, max 2.75, 2^4 - 1 = 15  ->  s = 3.75 / 15 = 0.25;  z = round(1 / 0.25) = 4
    # w / s = [-4, 11, 1.2, 4.4] -> round -> [-4, 11, 1, 4] -> + z = [0, 15, 5, 8]
    # dequantized (q - z) s = [-1, 2.75, 0.25, 1.0]
    q = q_of([[-1.0, 2.75, 0.3, 1.1]], "int4_asym", 4)
    assert_q(q, [[0, 15, 5, 8]], [[-1.0, 2.75, 0.25, 1.0]], scales=[[0.25]])
    assert q.zeros.tolist() == [[4]]
    assert q.values().tolist() == [[-4.0, 11.0, 1.0, 4.0]]


def test_int_asym_zero_point_clamps_for_an_all_positive_group() -> None:
    # docs/formats.md (as the authors' code) clamps z: min 1, max 2.75, qmax 7 -> s = 0.25
    # z = round(-1 / 0.25) = -4 -> clamped to 0; q = clamp(round(w / s), 0, 7):
    # w / s = [4, 11, 5.2, 8] -> [4, 7, 5, 7]: the top of the range saturates at 7 s = 1.75.
    q = q_of([[1.0, 2.75, 1.3, 2.0]], "int3_asym", 4)
    assert_q(q, [[4, 7, 5, 7]], [[1.0, 1.75, 1.25, 1.75]], scales=[[0.25]])
    assert q.zeros.tolist() == [[0]]


def test_int_asym_constant_group_is_exact() -> None:
    # max - min = 0: the scale falls back to |w| / qmax so a constant group is not lost.
    # 0.5: s = 0.5/15, z = clamp(round(-15)) = 0, q = round(15) = 15 -> 0.5.
    # -0.5: z = round(15) = 15, q = round(-15) + 15 = 0 -> (0 - 15) s = -0.5.
    q = q_of([[0.5] * 4, [-0.5] * 4, [0.0] * 4], "int4_asym", 4)
    assert q.codes.tolist() == [[15] * 4, [0] * 4, [0] * 4]
    torch.testing.assert_close(
        dequantize(q), torch.tensor([[0.5] * 4, [-0.5] * 4, [0.0] * 4]), rtol=1e-3, atol=0
    )


def test_fp_basic_hand_worked() -> None:
    # FP3 grid 0, ±1, ±2, ±4. absmax 1 -> s = 1/4. x = [4, -1.5, 0.75, -2.5, 3, -3, 0.25, 0.5]
    # midpoints 0.5, 1.5, 3: 4 -> 4; -1.5 (tie) -> -2; 0.75 -> 1; -2.5 -> -2; 3 (tie) -> 2;
    # -3 (tie) -> -4; 0.25 -> 0; 0.5 (tie) -> 0.
    # sign-magnitude codes (magnitude index 0..3 of 0,1,2,4): 3, 4+2=6, 1, 6, 2, 4+3=7, 0, 0
    q = q_of([[1.0, -0.375, 0.1875, -0.625, 0.75, -0.75, 0.0625, 0.125]], "fp3", 8)
    assert_q(
        q,
        [[3, 6, 1, 6, 2, 7, 0, 0]],
        [[1.0, -0.5, 0.25, -0.5, 0.5, -1.0, 0.0, 0.0]],
        scales=[[0.25]],
    )


def test_fp4_basic_hand_worked() -> None:
    # FP4 grid 0,1,2,3,4,6,8,12 (E2M1 x 2). absmax 3 -> s = 3/12 = 0.25
    # x = [12, 7, 5, -10, 2.5, 0.5, -9, 1.75]: 7 (tie 6|8) -> 6; 5 (tie 4|6) -> 4;
    # -10 (tie -12|-8) -> -12; 2.5 (tie) -> 2; 0.5 (tie) -> 0; -9 -> -8; 1.75 -> 2
    # codes: index of magnitude in (0,1,2,3,4,6,8,12), +8 when negative
    q = q_of([[3.0, 1.75, 1.25, -2.5, 0.625, 0.125, -2.25, 0.4375]], "fp4", 8)
    assert_q(
        q,
        [[7, 5, 4, 15, 2, 0, 14, 2]],
        [[3.0, 1.5, 1.0, -3.0, 0.5, 0.0, -2.0, 0.5]],
        scales=[[0.25]],
    )


def test_fp_er_hand_worked() -> None:
    # FP3-ER+: grid -4,-2,-1,0,1,2,3,4, +3 in the negative-zero code 100b = 4. s = 1/4
    # x = [4, 3, -3, 1.25] -> 4 (code 3), 3 (special code 4), -3 (tie -4|-2) -> -4 (code 7), 1
    q = q_of([[1.0, 0.75, -0.75, 0.3125]], "fp3_er_pos", 4)
    assert_q(q, [[3, 4, 7, 1]], [[1.0, 0.75, -1.0, 0.25]], scales=[[0.25]])
    # FP4-ER-: -10 in code 1000b = 8. absmax 3, max 12 -> s = 0.25; x = [-10, 12, 5, -2]
    # -10 -> special 8; 12 -> 7; 5 (tie 4|6) -> 4 (code 4); -2 -> 8 + 2 = 10
    q = q_of([[-2.5, 3.0, 1.25, -0.5]], "fp4_er_neg", 4)
    assert_q(q, [[8, 7, 4, 10]], [[-2.5, 3.0, 1.0, -0.5]], scales=[[0.25]])


def test_fp_ea_hand_worked() -> None:
    # FP3-EA+: max 6 -> s = 1.5 / 6 = 0.25; x = [6, -6, 2, 5]
    # 6 -> special code 4; -6: the negative side ends at -4 -> -4 (code 7); 2 -> code 2;
    # 5 (tie 4|6) -> 4 (code 3)
    q = q_of([[1.5, -1.5, 0.5, 1.25]], "fp3_ea_pos", 4)
    assert_q(q, [[4, 7, 2, 3]], [[1.5, -1.0, 0.5, 1.0]], scales=[[0.25]])
    # FP4-EA-: max 16 -> s = 4 / 16 = 0.25; x = [-16, 14, 10, 4]
    # -16 -> special code 8; 14: positive side ends at 12 -> code 7; 10 (tie 8|12) -> 8 (code 6)
    q = q_of([[-4.0, 3.5, 2.5, 1.0]], "fp4_ea_neg", 4)
    assert_q(q, [[8, 7, 6, 4]], [[-4.0, 3.0, 2.0, 1.0]], scales=[[0.25]])


def test_flint_hand_worked() -> None:
    # flint4 grid 0,1,2,3,4,6,8,16: s = 4 / 16 = 0.25; x = [16, 12, -10, 2.5]
    # 16 -> code 7; 12 (tie 8|16) -> 8 (code 6); -10 -> -8 (code 8 + 6 = 14); 2.5 (tie) -> 2
    q = q_of([[4.0, 3.0, -2.5, 0.625]], "flint4", 4)
    assert_q(q, [[7, 6, 14, 2]], [[4.0, 2.0, -2.0, 0.5]], scales=[[0.25]])


def test_bitmod3_hand_worked_sv_index() -> None:
    rows = [
        # ER± (max 4): s = 1/4, x = [4, 3, 1, 2]: exact under ER+ (3 is the special value).
        # ER-: 3 -> 2 (tie), MSE 0.25²/4; EA± (s = 1/6) inexact.  -> SV index 0
        [1.0, 0.75, 0.25, 0.5],
        # mirror image: exact only under ER- (-3).  -> SV index 1
        [-1.0, -0.75, -0.25, -0.5],
        # EA+ (max 6): s = 1.5/6 = 1/4, x = [6, 4, 1, 2] exact. ER+ (s = 0.375): x = 2.67 -> 3,
        # 0.67 -> 1, 1.33 -> 1: inexact; EA- tops out at +4.  -> SV index 2
        [1.5, 1.0, 0.25, 0.5],
        # mirror image -> SV index 3
        [-1.5, -1.0, -0.25, -0.5],
        # No candidate is exact. ER± (s = 0.375): x = [4, 2, -1.33, 0.33] -> [4, 2, -1, 0]
        #   MSE = (0.125² + 0.125²)/4 = 0.0078125 for both ER+ and ER- (neither uses ±3): a tie,
        #   the first candidate (ER+) wins.
        # EA+ (s = 0.25): x = [6, 3, -2, 0.5] -> [6, 2, -2, 0]: MSE (0.25² + 0.125²)/4 = 0.0195
        # EA- (s = 0.25): 6 -> 4: MSE >= 0.5²/4.  -> SV index 0
        [1.5, 0.75, -0.5, 0.125],
    ]
    q = q_of(rows, "bitmod3", 4)
    # codes: sign-magnitude of 0,1,2,4; the special value in 100b = 4
    assert_q(
        q,
        [[3, 4, 1, 2], [7, 4, 5, 6], [4, 3, 1, 2], [4, 7, 5, 6], [3, 2, 5, 0]],
        [rows[0], rows[1], rows[2], rows[3], [1.5, 0.75, -0.375, 0.0]],
        scales=[[0.25], [0.25], [0.25], [0.25], [0.375]],
        sv=[[0], [1], [2], [3], [0]],
    )
    # values(): the special value substituted from the register entry the SV index selects
    assert q.values()[:4].tolist() == [
        [4, 3, 1, 2],
        [-4, -3, -1, -2],
        [6, 4, 1, 2],
        [-6, -4, -1, -2],
    ]


def test_bitmod4_hand_worked_sv_index() -> None:
    rows = [
        [3.0, 2.5, 1.0, 0.25],  # ER± s = 3/12: x = [12, 10, 4, 1], exact with +10 -> index 0
        [-3.0, -2.5, -1.0, -0.25],  # mirror: -10 -> index 1
        # EA± s = 4/16: x = [16, 12, 4, 2] exact with +16. ER+ s = 1/3: 9 -> 8 inexact -> index 2
        [4.0, 3.0, 1.0, 0.5],
        [-4.0, -3.0, -1.0, -0.5],  # mirror: -16 -> index 3
    ]
    q = q_of(rows, "bitmod4", 4)
    # codes: magnitude index in (0,1,2,3,4,6,8,12), +8 when negative, special value in 1000b
    assert_q(
        q,
        [[7, 8, 4, 1], [15, 8, 12, 9], [8, 7, 4, 2], [8, 15, 12, 10]],
        rows,
        scales=[[0.25]] * 4,
        sv=[[0], [1], [2], [3]],
    )


def test_mixed_er_and_ea_two_candidates() -> None:
    # fp3_er holds only ER+ / ER-, fp3_ea only EA+ / EA-: the rows of the bitmod3 test map to
    # index 0 / 1 within each two-entry register.
    rows = [[1.0, 0.75, 0.25, 0.5], [-1.0, -0.75, -0.25, -0.5]]
    assert q_of(rows, "fp3_er", 4).sv_index.tolist() == [[0], [1]]
    rows = [[1.5, 1.0, 0.25, 0.5], [-1.5, -1.0, -0.25, -0.5]]
    assert q_of(rows, "fp3_ea", 4).sv_index.tolist() == [[0], [1]]


def test_ant_mixture_hand_worked() -> None:
    rows = [
        # INT3 (s = 1/3): x = [3, 2.25, 1.5, 0.75] -> [3, 2, 1, 1]: errors 0, 1/12, 1/6, 1/12
        #   MSE = (1 + 4 + 1)/144/4 = 0.0104
        # FP3 (s = 1/4): x = [4, 3, 2, 1] -> 3 (tie) -> 2: MSE = 0.25²/4 = 0.0156 -> INT3 (index 0)
        [1.0, 0.75, 0.5, 0.25],
        # FP3: x = [4, 2, 1, 0] exact; INT3: x = 1.5 -> 1 inexact -> FP3 (index 1)
        [1.0, 0.5, 0.25, 0.0],
    ]
    q = q_of(rows, "ant3", 4)
    s = float(np.float16(1 / 3))  # the FP16 group scale of row 0
    assert_q(
        q,
        [[3, 2, 1, 1], [3, 2, 1, 0]],
        [[3 * s, 2 * s, s, s], [1.0, 0.5, 0.25, 0.0]],
        scales=[[s], [0.25]],
        sv=[[0], [1]],
    )
    # ant4: INT4 vs flint4. [7, 5, 3, 1]/7 is exact on INT4; [16, 8, 3, 1]/16 on flint4.
    q = q_of([[7.0, 5.0, 3.0, 1.0], [16.0, 8.0, 3.0, 1.0]], "ant4", 4)
    assert q.sv_index.tolist() == [[0], [1]]
    assert dequantize(q).tolist() == [[7.0, 5.0, 3.0, 1.0], [16.0, 8.0, 3.0, 1.0]]


def _mx_block(values: list[float]) -> list[float]:
    return values + [0.0] * (32 - len(values))


def test_mxfp4_hand_worked_traps() -> None:
    # absmax 7.5: floor(log2 7.5) = 2, emax(E2M1) = 2 -> X = 0 (E8M0 code 127), elements = w.
    # E2M1 values 0, 0.5, 1, 1.5, 2, 3, 4, 6; quantum 0.5 below 2, 1 in [2,4), 2 in [4,8).
    #  7.5 -> 7.5/2 = 3.75 -> 4 -> 8 > 6: saturates at 6     (the block max rounds above max)
    #  1.8 -> 1.8/0.5 = 3.6 -> 4 -> 2.0                       (carry into the exponent)
    #  0.6 -> 1.2 -> 1 -> 0.5;  0.9 -> 1.8 -> 2 -> 1.0        (subnormal)
    #  5.5 -> 2.75 -> 3 -> 6;  0.25 -> 0.5 -> 0 (half-even);  0.75 -> 1.5 -> 2 -> 1.0 (half-even)
    #  2.5 -> 2.5 -> 2 (half-even) -> 2;  3.5 -> 3.5 -> 4 -> 4.0;  -1.25 -> -2.5 -> -2 -> -1.0
    #  -7 -> -3.5 -> -4 -> -8: saturates at -6
    block = [7.5, 1.8, 0.6, 0.9, 5.5, 0.25, 0.75, 2.5, 3.5, -1.25, -7.0]
    expected = [6.0, 2.0, 0.5, 1.0, 6.0, 0.0, 1.0, 2.0, 4.0, -1.0, -6.0]
    # E2M1 codes s.ee.m: 0.5=001, 1=010, 1.5=011, 2=100, 3=101, 4=110, 6=111
    codes = [7, 4, 1, 2, 7, 0, 2, 4, 6, 8 + 2, 8 + 7]
    # Row 1: the same block / 8: X = -3 (code 124), identical element codes.
    q = q_of([_mx_block(block), _mx_block([w / 8 for w in block]), [0.0] * 32], "mxfp4", None)
    assert q.group_size == 32 and q.scale_bits is None
    assert q.scales.tolist() == [[127], [124], [0]]  # all-zero block: X clamps to -127
    assert q.codes[0, :11].tolist() == codes and q.codes[1, :11].tolist() == codes
    assert q.codes[:, 11:].eq(0).all() and q.codes[2].eq(0).all()
    out = dequantize(q)
    assert out[0].tolist() == _mx_block(expected)
    assert out[1].tolist() == _mx_block([v / 8 for v in expected])
    assert out[2].tolist() == [0.0] * 32


def test_mxfp8_e4m3_hand_worked_traps() -> None:
    # absmax 500: floor(log2 500) = 8 = emax(E4M3) -> X = 0.
    #  448 = 1.75·2^8 -> s.1111.110 = 126;  460 -> quantum 2^(8-3) = 32: 14.375 -> 14 -> 448
    #  -500 -> 15.6 -> 16 -> 512 > 448: saturates to -448 (code 128 + 126 = 254), never NaN
    #  1.97 -> quantum 2^-3: 15.76 -> 16 -> 2.0 = s.1000.000 = 64   (carry into the exponent)
    #  0.001 -> subnormal quantum 2^(-6-3) = 2^-9: 0.512 -> 1 -> 2^-9 (code 1)
    q = q_of([_mx_block([448.0, 460.0, -500.0, 1.97, 0.001]), [0.0] * 32], "mxfp8_e4m3", 32)
    assert q.scales.tolist() == [[127], [0]]
    assert q.codes[0, :5].tolist() == [126, 126, 254, 64, 1]
    assert dequantize(q)[0, :5].tolist() == [448.0, 448.0, -448.0, 2.0, 2.0**-9]
    assert dequantize(q)[1].eq(0).all()


def test_mxfp8_e5m2_hand_worked_emax_15() -> None:
    # absmax 1: X = 0 - emax = -15 (E8M0 code 112); elements w·2^15.
    #  1 -> 2^15: exponent field 15 + 15 = 11110b, s.11110.00 = 120
    #  0.75 -> 1.5·2^14: 11101.10 = 118;  -2^-16 -> -2^-1: 1.01110.00 = 184
    q = q_of([_mx_block([1.0, 0.75, -(2.0**-16)])], "mxfp8_e5m2", 32)
    assert q.scales.tolist() == [[112]]
    assert q.codes[0, :3].tolist() == [120, 118, 184]
    assert dequantize(q)[0, :3].tolist() == [1.0, 0.75, -(2.0**-16)]
    # absmax 65000: X = 0; 65000 / 2^13 = 7.9 -> 8 -> 65536 > 57344: saturates at 57344 (code 123)
    q = q_of([_mx_block([65000.0, 60000.0])], "mxfp8_e5m2", 32)
    assert q.scales.tolist() == [[127]]
    assert q.codes[0, :2].tolist() == [123, 123]
    assert dequantize(q)[0, :2].tolist() == [57344.0, 57344.0]


def test_mxint8_hand_worked() -> None:
    # absmax 1.999: floor(log2) = 0, emax 0 -> X = 0; element quantum 2^-6
    #  1 -> 64; 0.5 -> 32; -1 -> -64 = 192 (two's complement); 1/128 -> 0.5 -> 0 (half-even)
    #  3/128 -> 1.5 -> 2; 1.999 -> 127.9 -> 128 > 127: saturates at 127/64
    q = q_of([_mx_block([1.0, 0.5, -1.0, 1 / 128, 3 / 128, 1.999])], "mxint8", 32)
    assert q.scales.tolist() == [[127]]
    assert q.codes[0, :6].tolist() == [64, 32, 192, 0, 2, 127]
    assert dequantize(q)[0, :6].tolist() == [1.0, 0.5, -1.0, 0.0, 2 / 64, 127 / 64]


def test_olive4_outlier_victim_pair_hand_worked() -> None:
    # Scale candidates absmax / t, t in (7, 12, 16, 24, ...), least MSE, first wins ties.
    # t = 12: s = 1, x = [12, 0.5, 1, -3]. Pair (12, 0.5): 12 > 7.5 -> outlier pair; 12 is on
    #   the abfloat grid (8, 12, 16, ...) at index 1 -> code 0001; its victim 0.5 is pruned to 0
    #   (code 1000). Pair (1, -3): normal INT4, codes 0001 and -3 = 1101b = 13. MSE = 0.5²/4.
    # t = 7: s = 12/7, x = [7, 0.29, 0.58, -1.75] -> [7, 0, 1, -2]: MSE ≈ 0.19 (worse)
    # t = 16: s = 0.75, x = [16, 0.67, 1.33, -4]: victim 0.5 pruned, 1 -> 0.75: MSE 0.3125/4
    # t = 24: s = 0.5: x = [24, 1, 2, -6], victim 1 pruned: MSE 0.5²/4, equal to t = 12 -> 12.
    # t = 32: s = 0.375: -3 / 0.375 = -8 > 7.5 makes pair 2 an outlier pair too: worse.
    q = q_of([[12.0, 0.5, 1.0, -3.0]], "olive4", 4)
    assert_q(q, [[1, 8, 1, 13]], [[12.0, 0.0, 1.0, -3.0]], scales=[[1.0]])
    assert q.values().tolist() == [[12.0, 0.0, 1.0, -3.0]]


def test_olive4_victim_identifier_pair_decodes_as_minus_eight() -> None:
    # Two identifier codes in one pair read as (-8 outlier, victim); one identifier marks the
    # other slot as the outlier on the abfloat grid (code 0001 -> 12, 1011 -> -24).
    codes = torch.tensor([[8, 8, 1, 8, 8, 11]], dtype=torch.uint8)
    q = QuantizedTensor(
        "olive4",
        (1, 6),
        6,
        None,
        codes,
        torch.zeros(1, 1, dtype=torch.uint8),
        torch.ones(1, 1, dtype=torch.float16),
    )
    assert q.values().tolist() == [[-8.0, 0.0, 12.0, 0.0, 0.0, -24.0]]


def test_second_level_int8_scale_hand_worked() -> None:
    # INT4 (max 7), G = 4, one channel, four groups with first-level scales
    #   s = absmax / 7 = [127/64, 0.5, 0.3, 0]
    # c = fp16(max s / 127) = fp16(1/64) = 1/64 exactly
    # codes = clamp(round(s / c), 0, 127) = [127, 32, round(19.2) = 19, 0]
    # effective scales ŝ = codes · c = [1.984375, 0.5, 0.296875, 0]
    # The weight codes come from the first-level s: group 2 = [2.1, 0.3, -0.9, 0] / 0.3
    #   = [7, 1, -3, 0], dequantized with ŝ: [7, 1, -3, 0] · 0.296875.
    s0 = 127 / 64
    row = [7 * s0, -3 * s0, s0, 0.0, 3.5, 1.0, -2.0, 0.5, 2.1, 0.3, -0.9, 0.0, 0.0, 0.0, 0.0, 0.0]
    # Second channel: s = [0.5, 0.25, 0.125, 0.0625] (absmax 3.5, 1.75, 0.875, 0.4375)
    # c = fp16(0.5 / 127 = 0.0039370) = 1032 · 2^-18 = 0.003936767578125 (10-bit mantissa)
    # s / c = 2^18 s / 1032: 131072/1032 = 127.008 -> 127; 65536/1032 = 63.504 -> 64;
    #         32768/1032 = 31.752 -> 32; 16384/1032 = 15.876 -> 16
    row2 = [3.5, 0, 0, 0, 1.75, 0, 0, 0, 0.875, 0, 0, 0, 0.4375, 0, 0, 0]
    q = q_of([row, row2], "int4", 4, scale_bits=8)
    c2 = 1032 * 2.0**-18
    assert q.channel_scale.tolist() == [1 / 64, c2]
    assert q.scales.dtype == torch.int8
    assert q.scales.tolist() == [[127, 32, 19, 0], [127, 64, 32, 16]]
    assert q.group_scale()[0].tolist() == [127 / 64, 0.5, 19 / 64, 0.0]
    assert q.codes[0, :12].tolist() == [7, 16 - 3, 1, 0, 7, 2, 16 - 4, 1, 7, 1, 16 - 3, 0]
    out = dequantize(q)
    assert out[0, 8:12].tolist() == [7 * 19 / 64, 19 / 64, -3 * 19 / 64, 0.0]
    assert out[1, ::4].tolist() == [7 * 127 * c2, 7 * 64 * c2, 7 * 32 * c2, 7 * 16 * c2]


def test_second_level_int4_scale() -> None:
    # scale_bits = 4: codes in 0..7. s = [0.7, 0.35, 0.1] -> c = fp16(0.1) = 0.0999755859375
    # s / c = [7.0017, 3.5009, 1.0002] -> [7, 4, 1] (3.5009 rounds up)
    row = [4.9, 0, 0, 0, 2.45, 0, 0, 0, 0.7, 0, 0, 0]
    q = q_of([row], "int4", 4, scale_bits=4)
    assert q.scales.tolist() == [[7, 4, 1]]
    assert q.channel_scale.tolist() == [float(np.float16(0.1))]


def test_bits_per_weight() -> None:
    w = torch.randn(2, 256)
    # bitmod3, G=128, INT8 scales: 3 + (8 scale + 2 SV)/128 + 16 channel-scale bits / K
    assert quantize(w, "bitmod3").bits_per_weight == 3 + 10 / 128 + 16 / 256
    # INT4 asym, FP16 scales: 4 + (16 scale + 4 zero)/128
    assert quantize(w, "int4_asym", scale_bits=None).bits_per_weight == 4 + 20 / 128
    # MX: 4 + 8-bit E8M0 per 32
    assert quantize(w, "mxfp4").bits_per_weight == 4 + 8 / 32


def test_default_group_sizes() -> None:
    w = torch.randn(2, 256)
    assert quantize(w, "int4").group_size == 128
    assert quantize(w, "mxfp6_e3m2").group_size == 32
    assert quantize(w, "bitmod4").sv_index.shape == (2, 2)


# ----------------------------------------------------------------------------------------------
# Agreement with the slow reference on random groups
# ----------------------------------------------------------------------------------------------


def _random_weight(n: int, k: int, group_size: int, seed: int) -> torch.Tensor:
    """Gaussian weights with a few outliers (3 per group, 3-8 sigma, random sign)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen)
    groups = k // group_size
    idx = torch.randint(0, group_size, (n, groups, 3), generator=gen)
    idx = idx + torch.arange(groups)[None, :, None] * group_size
    magnitude = 3 + 5 * torch.rand(n, groups, 3, generator=gen)
    sign = torch.where(torch.rand(n, groups, 3, generator=gen) < 0.5, -1.0, 1.0)
    w.view(n, k).scatter_(1, idx.reshape(n, -1), (magnitude * sign).reshape(n, -1))
    return w * 0.02


MARGIN = 1e-5  # grid units: float32 and float64 values of w/s differ by ~1e-6 at most
ERROR_GAP = 1e-5  # relative: float32 vs float64 mean squared errors


@pytest.mark.parametrize("name", [*ref.SYMMETRIC_SINGLE, *ref.MIXTURES])
def test_fast_quantizer_agrees_with_reference(name: str) -> None:
    n, k, group_size = 4, 128, 32
    w = _random_weight(n, k, group_size, seed=FORMAT_IDS[name])
    q = quantize(w, name, group_size=group_size, scale_bits=None)
    codes, sv, out = q.codes.numpy(), q.sv_index.numpy(), dequantize(q).numpy()
    scales = q.scales.numpy()
    compared = skipped_groups = 0
    for row in range(n):
        for g in range(k // group_size):
            offset = g * group_size
            group = [float(x) for x in w[row, offset : offset + group_size]]
            result = ref.quantize_group(group, name)
            if result.error_gap < ERROR_GAP:  # two candidates within float noise of each other
                skipped_groups += 1
                continue
            assert sv[row, g] == result.index, (row, g)
            # FP16 storage of the float32 first-level scale
            scale16 = np.float16(np.float32(result.scale))
            assert scales[row, g] == scale16, (row, g)
            for i, margin in enumerate(result.margins):
                if margin < MARGIN:  # within float noise of a rounding midpoint
                    continue
                compared += 1
                assert codes[row, offset + i] == result.codes[i], (row, offset + i)
                assert out[row, offset + i] == result.values[i] * float(scale16), (row, offset + i)
    assert skipped_groups <= 1
    assert compared >= 0.95 * n * k


def test_random_groups_are_not_all_trivial() -> None:
    # The agreement test above only means something if Algorithm 1 picks different candidates.
    w = _random_weight(16, 256, 32, seed=7)
    for name in ("bitmod3", "bitmod4"):
        picked = set(quantize(w, name, group_size=32).sv_index.flatten().tolist())
        assert picked == {0, 1, 2, 3}, (name, picked)


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_int_asym_agrees_with_reference(bits: int) -> None:
    n, k, group_size = 4, 128, 32
    w = _random_weight(n, k, group_size, seed=100 + bits)
    q = quantize(w, f"int{bits}_asym", group_size=group_size, scale_bits=None)
    compared = 0
    for row in range(n):
        for g in range(k // group_size):
            offset = g * group_size
            group = [float(x) for x in w[row, offset : offset + group_size]]
            codes, scale, zero, margins = ref.quantize_group_asym(group, bits)
            assert float(q.scales[row, g]) == float(np.float16(np.float32(scale)))
            if min(margins) >= MARGIN:
                assert int(q.zeros[row, g]) == zero
            for i, margin in enumerate(margins):
                if margin >= MARGIN:
                    compared += 1
                    assert int(q.codes[row, offset + i]) == codes[i], (row, offset + i)
    assert compared >= 0.95 * n * k


@pytest.mark.parametrize("name", ["bitmod3", "int4", "fp4_ea_pos"])
@pytest.mark.parametrize("scale_bits", [8, 4])
def test_second_level_scale_agrees_with_reference(name: str, scale_bits: int) -> None:
    n, k, group_size = 3, 512, 32
    w = _random_weight(n, k, group_size, seed=scale_bits)
    q = quantize(w, name, group_size=group_size, scale_bits=scale_bits)
    plain = quantize(w, name, group_size=group_size, scale_bits=None)
    # Codes come from the first-level scale: the second level changes only the scales.
    assert torch.equal(q.codes, plain.codes) and torch.equal(q.sv_index, plain.sv_index)
    for row in range(n):
        first_level = []
        for g in range(k // group_size):
            group = [float(x) for x in w[row, g * group_size : (g + 1) * group_size]]
            first_level.append(float(np.float32(ref.quantize_group(group, name).scale)))
        codes, channel, margins = ref.quantize_scales_int(first_level, scale_bits)
        assert float(q.channel_scale[row]) == channel
        for g, margin in enumerate(margins):
            if margin >= MARGIN:
                assert int(q.scales[row, g]) == codes[g], (row, g)


@pytest.mark.parametrize("name", list(ref.MX_ELEMENTS))
def test_mx_agrees_with_reference(name: str) -> None:
    # Exact arithmetic on both sides (power-of-two scaling, half-even rounding): no tie caveat.
    gen = torch.Generator().manual_seed(FORMAT_IDS[name])
    exponents = torch.randint(-20, 20, (4, 1), generator=gen).float()
    w = torch.randn(4, 128, generator=gen) * torch.exp2(exponents)
    w[0, :32] = 0.0  # an all-zero block
    q = quantize(w, name)
    out = dequantize(q)
    for row in range(4):
        for b in range(4):
            block = [float(x) for x in w[row, 32 * b : 32 * (b + 1)]]
            shared, elements = ref.mx_block(block, name)
            assert int(q.scales[row, b]) == shared + 127
            assert out[row, 32 * b : 32 * (b + 1)].tolist() == [e * 2.0**shared for e in elements]


def test_quantize_runs_on_a_cuda_device_when_present() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    w = _random_weight(8, 256, 128, seed=3)
    for name in ("bitmod3", "int4_asym", "mxfp4", "olive4"):
        cpu, gpu = quantize(w, name), quantize(w.cuda(), name)
        assert gpu.codes.is_cuda
        assert torch.equal(cpu.codes, gpu.codes.cpu())
        assert torch.equal(dequantize(cpu), dequantize(gpu).cpu())


# ----------------------------------------------------------------------------------------------
# Quality ordering (the MSE claim of the paper, on a small synthetic weight)
# ----------------------------------------------------------------------------------------------


def test_bitmod_beats_int_asym_and_fp_on_gaussian_with_outliers() -> None:
    w = _random_weight(64, 1024, 128, seed=11)

    def mse(name: str) -> float:
        return float((dequantize(quantize(w, name, scale_bits=None)) - w).square().mean())

    assert mse("bitmod3") < mse("int3_asym")
    assert mse("bitmod3") < mse("fp3")
    assert mse("bitmod4") < mse("int4_asym")
    assert mse("bitmod4") < mse("fp4")


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight", "kwargs", "message"),
    [
        (torch.ones(128), {}, "2-D"),
        (torch.ones(2, 3, 128), {}, "2-D"),
        (torch.ones(0, 128), {}, "empty"),
        (torch.ones(4, 0), {}, "empty"),
        (torch.ones(4, 64, dtype=torch.int32), {"group_size": 32}, "floating point"),
        (torch.ones(4, 128), {"group_size": 0}, "group size must be positive"),
        (torch.ones(4, 128), {"scale_bits": 1}, "scale_bits"),
        (torch.ones(4, 128), {"scale_bits": 9}, "scale_bits"),
        (torch.ones(4, 128), {"scale_bits": 0}, "scale_bits"),
    ],
)
def test_bad_input_raises_one_clear_error(weight, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        quantize(weight, "bitmod3", **kwargs)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weight_names_its_position(bad: float) -> None:
    w = torch.zeros(3, 128)
    w[2, 77] = bad
    with pytest.raises(ValueError, match=r"non-finite weight .* at \[2, 77\]"):
        quantize(w, "int4")


def test_mx_refuses_other_block_sizes() -> None:
    with pytest.raises(ValueError, match="block size 32, not 64"):
        quantize(torch.ones(2, 128), "mxfp4", group_size=64)
    assert quantize(torch.ones(2, 128), "mxfp4", group_size=32).group_size == 32


def test_olive_refuses_odd_group_sizes() -> None:
    with pytest.raises(ValueError, match="group size must be even, got 3"):
        quantize(torch.ones(2, 12), "olive4", group_size=3)


def test_fp16_group_scale_overflow_is_an_error() -> None:
    # absmax 1e6 / 7 > 65504: an FP16 group scale would be inf; INT8 scales (FP16 channel
    # scale 1e6/7/127) still fit.
    w = torch.full((1, 128), 1e6)
    with pytest.raises(ValueError, match=r"group scale .* overflows FP16"):
        quantize(w, "int4", scale_bits=None)
    assert torch.isfinite(dequantize(quantize(w, "int4", scale_bits=8))).all()
    with pytest.raises(ValueError, match="channel 0 scale .* overflows FP16"):
        quantize(torch.full((1, 128), 1e9), "int4", scale_bits=8)
