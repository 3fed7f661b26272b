"""The rules for stored values: what the web side refuses before producing, and what
the consumer's check (`is_json`, tested in test_apply.py) agrees with."""

import math

import pytest

from kvstore import values


@pytest.mark.parametrize(
    "text, code",
    [
        ("[" * 513 + "]" * 513, "nesting_too_deep"),
        ("[" * 5000 + "]" * 5000, "nesting_too_deep"),
        ("[" * 5000, "nesting_too_deep"),
        ("NaN", "non_finite_number"),
        ("[Infinity]", "non_finite_number"),
        ("-Infinity", "non_finite_number"),
        ("1e400", "non_finite_number"),
        ('{"a": -1E+999}', "non_finite_number"),
        ('"\\ud800"', "unpaired_surrogate"),
        ('["x\\udc00y"]', "unpaired_surrogate"),
    ],
)
def test_loads_refuses_with_a_code(text, code):
    with pytest.raises(values.ValueRefused) as refused:
        values.loads(text)
    assert refused.value.code == code and refused.value.detail


@pytest.mark.parametrize("text", ["{", "[1,]", "'x'", "", "1 2", "1" * 5000])
def test_loads_raises_value_error_for_what_is_not_json(text):
    with pytest.raises(ValueError) as raised:
        values.loads(text)
    assert not isinstance(raised.value, values.ValueRefused)


def test_loads_and_encode_agree_with_is_json_at_the_depth_limit():
    deepest = "[" * values.MAX_DEPTH + "]" * values.MAX_DEPTH
    value = values.loads(deepest)
    assert values.encode(value) == deepest.encode() and values.is_json(deepest)
    with pytest.raises(values.ValueRefused):
        values.encode([value])


def test_paired_surrogates_are_one_character():
    assert values.loads('"\\ud83d\\ude00"') == "\U0001f600"
    assert values.encode("\U0001f600") == '"😀"'.encode()


@pytest.mark.parametrize(
    "value, code",
    [
        (math.nan, "non_finite_number"),
        ({"a": [math.inf]}, "non_finite_number"),
        ("\ud800", "unpaired_surrogate"),
        ({"\udfff": 1}, "unpaired_surrogate"),
    ],
)
def test_encode_refuses_what_no_reader_could_read_back(value, code):
    with pytest.raises(values.ValueRefused) as refused:
        values.encode(value)
    assert refused.value.code == code


def test_too_deep_ignores_brackets_inside_strings():
    assert not values.too_deep('["' + "[" * 1000 + '"]')
    assert values.too_deep("[" * 3 + "]" * 3, limit=2)
    assert not values.too_deep("[[]][[]]", limit=2)
