"""bitmod.runtime.formats.bitserial: every code of every format decodes to terms summing to
its value.

The value of each code comes from an independent decoder written here from docs/formats.md (and
the OCP MX bit layouts), not from the format registry's tables.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bitmod.runtime.formats import FORMAT_NAMES, get_format, quantize
from bitmod.runtime.formats import reference_quant as ref
from bitmod.runtime.formats.bitserial import (
    booth_digits,
    decode_codes,
    encoding,
    num_terms,
    quantized_terms,
    value_terms,
)

#: (exponent bits, mantissa bits, NaN rule) of the MX FP elements.
MX_FP_LAYOUT = {
    "mxfp3": (2, 0, None),
    "mxfp4": (2, 1, None),
    "mxfp6_e2m3": (2, 3, None),
    "mxfp6_e3m2": (3, 2, None),
    "mxfp8_e4m3": (4, 3, "all-ones magnitude"),
    "mxfp8_e5m2": (5, 2, "all-ones exponent"),
}


def mx_code_value(name: str, code: int) -> float | None:
    """Value of an MX element code in units of its least subnormal (None: NaN/Inf code)."""
    if name == "mxint8":
        return float(code - 256 if code >= 128 else code)
    ebits, mbits, nan_rule = MX_FP_LAYOUT[name]
    bits = 1 + ebits + mbits
    sign = code >> (bits - 1)
    exponent = (code >> mbits) & ((1 << ebits) - 1)
    mantissa = code & ((1 << mbits) - 1)
    if (
        nan_rule == "all-ones magnitude"
        and exponent == (1 << ebits) - 1
        and mantissa == (1 << mbits) - 1
    ):
        return None
    if nan_rule == "all-ones exponent" and exponent == (1 << ebits) - 1:
        return None
    magnitude = mantissa if exponent == 0 else ((1 << mbits) + mantissa) << (exponent - 1)
    return float(-magnitude if sign else magnitude)


def expected_code_values(name: str, sv: int) -> list[float | None]:
    """Every code's value under SV index ``sv`` (None where the code holds no value)."""
    fmt = get_format(name)
    if fmt.family == "mx":
        return [mx_code_value(name, c) for c in range(1 << fmt.bits)]
    if fmt.family == "int_asym":
        return [float(c) for c in range(1 << fmt.bits)]
    if fmt.family == "mixture":
        return ref.code_table(ref.MIXTURES[name][sv])
    return ref.code_table(name)


DECODABLE = [n for n in FORMAT_NAMES if get_format(n).family != "olive"]


@pytest.mark.parametrize("name", DECODABLE)
def test_every_code_decodes_and_its_terms_sum_to_the_value(name: str) -> None:
    fmt = get_format(name)
    codes = np.arange(1 << fmt.bits)
    for sv in range(fmt.n_candidates):
        expected = expected_code_values(name, sv)
        decoded = decode_codes(name, codes, np.full_like(codes, sv))
        valid = np.array([v is not None for v in expected])
        assert np.isnan(decoded[~valid]).all(), (name, sv)
        values = decoded[valid].astype(np.int64)
        assert values.tolist() == [v for v in expected if v is not None], (name, sv)
        terms = value_terms(name, values)
        assert terms.count == num_terms(name)
        assert terms.values().tolist() == values.tolist(), (name, sv)


@pytest.mark.parametrize("bits", range(3, 9))
def test_asym_every_q_minus_z_has_exact_booth_terms(bits: int) -> None:
    # q, z in 0 .. 2^b - 1, so the Booth decoder sees q - z in -(2^b - 1) .. 2^b - 1: b + 1 bits.
    name = f"int{bits}_asym"
    q, z = np.meshgrid(np.arange(1 << bits), np.arange(1 << bits))
    values = (q - z).ravel()
    terms = value_terms(name, values)
    assert terms.count == num_terms(name) == (bits + 2) // 2
    assert terms.values().tolist() == values.tolist()


def test_olive_grid_values_have_exact_terms() -> None:
    # Normals -7..7 and abfloat outliers ±(8, 12, ..., 96): 7 = 111b needs three LOD terms.
    grid = get_format("olive4").grid.astype(np.int64)
    assert set(grid.tolist()) >= {-96, -8, -7, 7, 8, 12, 96}
    terms = value_terms("olive4", grid)
    assert terms.count == num_terms("olive4") == 3
    assert terms.values().tolist() == grid.tolist()


def test_num_terms_of_the_issue() -> None:
    counts = {
        "int8": 4,
        "int6": 3,
        "int5": 3,
        "int4": 2,
        "int3": 2,
        "mxint8": 4,
        "fp4": 2,
        "fp3": 2,
        "bitmod4": 2,
        "bitmod3": 2,
    }
    assert {name: num_terms(name) for name in counts} == counts
    for name in ref.EXTENDED:
        assert num_terms(name) == 2


@pytest.mark.parametrize("name", [*ref.EXTENDED, "fp3", "fp4", "bitmod3", "bitmod4"])
def test_every_fp3_fp4_er_ea_value_needs_at_most_two_terms(name: str) -> None:
    values = get_format(name).grid.astype(np.int64)
    terms = value_terms(name, values)
    nonzero_terms = terms.man.sum(axis=-1)
    assert nonzero_terms.max() <= 2
    # the special values and FP4's largest: ±3 = 2+1, ±6 = 4+2, ±10 = 8+2, ±12 = 8+4 take two
    for value in (3, 6, 10, 12):
        if value in values or -value in values:
            assert nonzero_terms[np.abs(values) == value].min() == 2


def test_term_structure_booth() -> None:
    values = np.arange(-127, 128)
    terms = value_terms("int8", values)
    # one digit per 2 bits, shared significance 0, 2, 4, 6 across lanes, digit in {-2..2}
    assert (terms.bsig == np.array([0, 2, 4, 6])).all()
    assert set(np.unique(terms.exp)) <= {0, 1} and set(np.unique(terms.man)) <= {0, 1}
    assert not (terms.sign.astype(bool) & (terms.man == 0)).any()
    digits = booth_digits(values, 4)
    assert digits.min() >= -2 and digits.max() <= 2
    assert (digits.astype(np.int64) * 4 ** np.arange(4)).sum(axis=-1).tolist() == values.tolist()


def test_term_structure_lod() -> None:
    values = get_format("bitmod4").grid.astype(np.int64)
    terms = value_terms("bitmod4", values)
    assert (terms.bsig == 0).all()
    # highest set bit first: a second term, when present, is strictly lower than the first
    both = terms.man.sum(axis=-1) == 2
    assert (terms.exp[both, 0] > terms.exp[both, 1]).all()
    assert encoding("bitmod4") == "lod" and encoding("int6") == "booth"
    assert encoding("int4_asym") == "booth" and encoding("mxint8") == "booth"


def test_hand_worked_terms() -> None:
    # INT8 127 = 0111_1111b. Booth digits d_i = -2 b_{2i+1} + b_{2i} + b_{2i-1}:
    #   i=0: -2 + 1 + 0 = -1;  i=1: -2 + 1 + 1 = 0;  i=2: 0;  i=3: -0 + 1 + 1 = 2
    #   -1·4^0 + 2·4^3 = 127. Terms (sign, exp, man, bsig): (1,0,1,0) (0,0,0,2) (0,0,0,4) (0,1,1,6)
    t = value_terms("int8", np.array([127, -128]))
    assert t.sign[0].tolist() == [1, 0, 0, 0]
    assert t.exp[0].tolist() == [0, 0, 0, 1]
    assert t.man[0].tolist() == [1, 0, 0, 1]
    # -128 = 1000_0000b: only d_3 = -2·1 + 0 + 0 = -2 -> -2·64
    assert t.sign[1].tolist() == [0, 0, 0, 1] and t.exp[1].tolist() == [0, 0, 0, 1]
    # FP4-ER 10 (= 5.0 · 2 in grid units) = 1010b: terms 2^3 + 2^1; EA- -6 = -(2^2 + 2^1)
    t = value_terms("bitmod4", np.array([10, -6, 1, 0]))
    assert t.exp.tolist() == [[3, 1], [2, 1], [0, 0], [0, 0]]
    assert t.man.tolist() == [[1, 1], [1, 1], [1, 0], [0, 0]]
    assert t.sign.tolist() == [[0, 0], [1, 1], [0, 0], [0, 0]]


def test_decode_codes_with_a_reprogrammed_sv_register() -> None:
    # bitmod3: the negative-zero code 100b reads register[sv]; other codes are unaffected.
    codes = np.array([[4, 4, 1, 7], [4, 4, 3, 0]])
    sv = np.array([[0], [3]])  # one SV index per group (row), broadcast over its codes
    register = (5, -5, 12, -12)
    assert decode_codes("bitmod3", codes, sv, register).tolist() == [
        [5.0, 5.0, 1.0, -4.0],
        [-12.0, -12.0, 4.0, 0.0],
    ]
    assert decode_codes("bitmod3", codes, sv).tolist() == [
        [3.0, 3.0, 1.0, -4.0],
        [-6.0, -6.0, 4.0, 0.0],
    ]
    # per-weight indices
    assert decode_codes("bitmod4", np.full(4, 8), np.arange(4), (7, 9, -11, 13)).tolist() == [
        7.0,
        9.0,
        -11.0,
        13.0,
    ]
    # a register value with three set bits (7 = 111b) raises the term count to three
    assert num_terms("bitmod4", (7, 9, -11, 13)) == 3
    values = decode_codes("bitmod4", np.full(4, 8), np.arange(4), (7, 9, -11, 13))
    terms = value_terms("bitmod4", values, terms=num_terms("bitmod4", (7, 9, -11, 13)))
    assert terms.values().tolist() == [7, 9, -11, 13]
    # a single extended type has a one-entry register
    assert decode_codes("fp3_er_pos", np.array([4, 3]), np.zeros(2, int), (5,)).tolist() == [5, 4]


@pytest.mark.parametrize(
    "name", ["bitmod3", "bitmod4", "int4_asym", "int8", "fp3_ea_neg", "mxfp4", "olive4", "ant4"]
)
def test_quantized_terms_sum_to_the_quantized_values(name: str) -> None:
    w = torch.randn(4, 256, generator=torch.Generator().manual_seed(5))
    w[0, 3] = 9.0  # an outlier (olive pairs, EA values)
    q = quantize(w, name)
    terms = quantized_terms(q)
    assert terms.sign.shape == (4, 256, num_terms(name))
    assert terms.values().tolist() == q.values().numpy().astype(np.int64).tolist()


def test_decoder_and_quantizer_agree_on_values() -> None:
    # decode_codes (the hardware's front end) and QuantizedTensor.values() read the same codes.
    w = torch.randn(8, 256, generator=torch.Generator().manual_seed(9))
    for name in ("bitmod3", "bitmod4", "ant3", "fp4_er_neg"):
        q = quantize(w, name)
        sv = q.sv_index.numpy().repeat(q.group_size, axis=1)
        assert decode_codes(name, q.codes.numpy(), sv).tolist() == q.values().tolist()


def test_value_terms_errors() -> None:
    with pytest.raises(ValueError, match="needs more than 2 terms"):
        value_terms("fp4", np.array([7]))  # 111b: three set bits
    with pytest.raises(ValueError, match="outside"):
        value_terms("int8", np.array([128]))
    with pytest.raises(ValueError, match="finite integers"):
        value_terms("int8", np.array([1.5]))
    with pytest.raises(ValueError, match="finite integers"):
        value_terms("fp4", np.array([np.nan]))
    with pytest.raises(ValueError, match="unknown data type"):
        num_terms("int9")
