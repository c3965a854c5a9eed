"""Entry point of pagemig-zram: registers the zram driver and its command through the pagemig hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pagemig import hookimpl
from pagemig.driver import DriverInfo
from pagemig_zram.driver import ZramDevice
from pagemig_zram.options import validate_options


@hookimpl
def pagemig_register_drivers(register: Callable[[Any], None]) -> None:
    register(DriverInfo(
        name="zram",
        factory=ZramDevice,
        description="zram swap device on zsmalloc (v4.8): size classes, zspages, movable zspage pages",
        validate=validate_options,
    ))
