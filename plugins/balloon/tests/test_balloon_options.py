"""The ``[drivers.balloon]`` table: defaults, units, and clear errors for bad keys and values."""

from __future__ import annotations

import pytest

from pagemig.sim.schema import TableError
from pagemig_balloon.options import validate_options


def test_defaults_are_the_kernels() -> None:
    opts = validate_options({})
    assert opts["movable"] is True
    assert opts["deflate_on_oom"] is False  # QEMU's deflate-on-oom defaults to off
    assert opts["oom_pages"] == 256  # virtio_balloon's oom_pages module parameter
    assert opts["inflate_rate"] == 65536.0


@pytest.mark.parametrize(("text", "pages_per_s"), [
    (1000, 1000.0),
    ("1000/s", 1000.0),
    ("256MiB/s", 256 * 1024 * 1024 / 4096),
    ("4KiB/ms", 1000.0),
    ("1GiB/min", 262144 / 60),
    (0, 0.0),
])
def test_inflate_rate_units(text: object, pages_per_s: float) -> None:
    assert validate_options({"inflate_rate": text})["inflate_rate"] == pytest.approx(pages_per_s)


@pytest.mark.parametrize(("table", "message"), [
    ({"deflate_on_om": True}, 'did you mean "deflate_on_oom"'),
    ({"movable": "no"}, "true or false"),
    ({"inflate_rate": "fast"}, "pages per second"),
    ({"inflate_rate": "256MB/s"}, "binary"),
    ({"inflate_rate": "10/fortnight"}, "unknown time unit"),
    ({"inflate_rate": -1}, ">= 0"),
    ({"oom_pages": 0}, ">= 1"),
    ({"target_mib": 1.5}, "integer"),
])
def test_bad_tables_are_refused_clearly(table: dict[str, object], message: str) -> None:
    with pytest.raises(TableError) as info:
        validate_options(table)
    assert message in str(info.value)
    assert info.value.key == next(iter(table))


def test_private_keys_pass_through() -> None:
    assert validate_options({"_plugin": "balloon"})["_plugin"] == "balloon"
