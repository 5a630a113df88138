"""The one KEY=VALUE parser: order, the forms it refuses, and how its messages name them."""

from __future__ import annotations

import pytest
from bitmod.runtime.keyvalue import KeyValueError, parse_key_values


def test_pairs_in_order_and_values_with_equals_signs() -> None:
    assert parse_key_values(["b=2", "a=x=y", "pe.ant=0.5"]) == {
        "b": "2",
        "a": "x=y",
        "pe.ant": "0.5",
    }
    assert list(parse_key_values(["z=1", "a=2"])) == ["z", "a"]
    assert parse_key_values(["a="], allow_empty_value=True) == {"a": ""}


@pytest.mark.parametrize(
    ("items", "kwargs", "message"),
    [
        (["a"], {}, "expected KEY=VALUE, got 'a'"),
        (["=1"], {"what": "NAME=DTYPE"}, "expected NAME=DTYPE, got '=1'"),
        (["a="], {}, "expected KEY=VALUE, got 'a='"),
        (["a=1", "a=2"], {}, "'a' given twice"),
        (["ant"], {"option": "--pe-count"}, "--pe-count expects KEY=VALUE, got 'ant'"),
        (["x=1", "x=1"], {"option": "--energy"}, "--energy: 'x' given twice"),
    ],
)
def test_refused_items_name_the_item(items: list[str], kwargs: dict, message: str) -> None:
    with pytest.raises(KeyValueError) as error:
        parse_key_values(items, **kwargs)
    assert str(error.value) == message
    assert isinstance(error.value, ValueError)
