"""Entry point of pagemig-balloon: registers its driver through the pagemig hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pagemig import hookimpl
from pagemig.driver import DriverInfo

from pagemig_balloon.driver import BalloonDriver
from pagemig_balloon.options import validate_options

PLUGIN_NAME = "balloon"


@hookimpl
def pagemig_register_drivers(register: Callable[[Any], None]) -> None:
    register(DriverInfo(
        name="balloon",
        factory=BalloonDriver,
        description="virtio balloon (mm/balloon_compaction.c): inflate/deflate, host record, movable pages",
        validate=validate_options,
    ))
