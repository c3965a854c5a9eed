"""Units as people write them: each parser against hand-worked values, plus round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagemig.sim import units


@pytest.mark.parametrize(("text", "expected"), [
    ("1GiB", 1 << 30), ("512MiB", 512 << 20), ("4KiB", 4096), ("1G", 1 << 30), ("2m", 2 << 20),
    ("1.5GiB", 3 << 29), ("256 pages", 256 * 4096), ("1 page", 4096), ("0", 0), (4096, 4096),
    ("1_024MiB", 1 << 30), ("1TiB", 1 << 40), ("10B", 10),
])
def test_sizes(text: object, expected: int) -> None:
    assert units.parse_size(text) == expected


@pytest.mark.parametrize(("text", "hint"), [
    ("1GB", "binary"), ("512MB", "binary"), ("-1GiB", "negative"), ("1XiB", "unknown unit"),
    ("lots", ""), (True, ""), ([1], ""), ("0.5B", "whole number"),
])
def test_bad_sizes(text: object, hint: str) -> None:
    with pytest.raises(units.UnitError) as err:
        units.parse_size(text)
    assert "size" in err.value.expected
    assert hint in str(err.value)


def test_pages_must_be_whole() -> None:
    assert units.parse_pages("8KiB") == 2
    with pytest.raises(units.UnitError, match="whole number of 4 KiB pages"):
        units.parse_pages("6KiB")


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("10min", 600.0), ("2h", 7200.0), ("3d", 259200.0), ("500ms", 0.5), ("1.5s", 1.5),
    (30, 30.0), (0.25, 0.25), ("1m", 60.0), ("2 minutes", 120.0),
])
def test_durations(text: object, seconds: float) -> None:
    assert units.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["-5s", "10 parsecs", "soon", False, "0s"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(units.UnitError):
        units.parse_duration(text, allow_zero=False)


@pytest.mark.parametrize(("text", "frac"), [("35%", 0.35), ("100%", 1.0), ("0%", 0.0), (0.5, 0.5), (1, 1.0)])
def test_percent(text: object, frac: float) -> None:
    assert units.parse_percent(text) == pytest.approx(frac)


@pytest.mark.parametrize("text", ["35", "135%", "-1%", 2, "half"])
def test_bad_percent(text: object) -> None:
    with pytest.raises(units.UnitError):
        units.parse_percent(text)


@pytest.mark.parametrize(("text", "rate"), [("20/s", 20.0), ("120/min", 2.0), ("3600/h", 1.0), (5, 5.0),
                                            ("1/500ms", 2.0)])
def test_rates(text: object, rate: float) -> None:
    assert units.parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize("text", ["x/s", "5/fortnight", "-1/s"])
def test_bad_rates(text: object) -> None:
    with pytest.raises(units.UnitError):
        units.parse_rate(text)


@given(st.integers(min_value=0, max_value=1 << 44))
def test_size_round_trip(n: int) -> None:
    assert units.parse_size(units.format_size(n)) == n


@given(st.integers(min_value=0, max_value=10**7))
def test_duration_round_trip(seconds: int) -> None:
    assert units.parse_duration(units.format_duration(float(seconds))) == pytest.approx(seconds)


def test_format_examples() -> None:
    assert units.format_size(1 << 30) == "1GiB"
    assert units.format_size(6144) == "6KiB"
    assert units.format_duration(600.0) == "10min"
    assert units.format_duration(0.5) == "500ms"
