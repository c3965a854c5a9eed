"""Entry point of pagemig-zram: the zram swap device, its `zram_compact` command and the
`zram-1g` scenario."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pagemig.api import CommandInfo, DriverInfo, hookimpl, package_scenarios
from pagemig_zram.driver import ZramDevice
from pagemig_zram.options import validate_options

PAGEMIG_API_VERSION = "1.0"  # the pagemig.api this plugin is written for (checked at discovery)


def zram_compact_validate(args: Sequence[str]) -> None:
    if args:
        raise ValueError("this command takes no arguments (it is `echo 1 > /sys/block/zram0/compact`)")


def zram_compact_handler(run: Any, args: Sequence[str]) -> Mapping[str, Any]:
    """zsmalloc's own compaction, recorded like any compaction (free memory before and after)."""
    driver: ZramDevice = run.drivers["zram"]
    with run.compaction("zram_compact") as record:
        freed = driver.compact()
    return {"pages_compacted": freed, "compaction": record.index}


@hookimpl
def pagemig_register_drivers(register: Callable[[Any], None]) -> None:
    register(DriverInfo(
        name="zram",
        factory=ZramDevice,
        description="zram swap device on zsmalloc (v4.8): size classes, zspages, movable zspage pages",
        validate=validate_options,
    ))


@hookimpl
def pagemig_register_commands(register: Callable[[Any], None]) -> None:
    register(CommandInfo(
        name="zram_compact",
        handler=zram_compact_handler,
        description="zsmalloc's own compaction (zs_compact), as `echo 1 > /sys/block/zram0/compact`",
        driver="zram",
        validate=zram_compact_validate,
        usage="zram_compact",
    ))


@hookimpl
def pagemig_register_scenarios(register: Callable[[Any], None]) -> None:
    for info in package_scenarios("pagemig_zram"):
        register(info)
