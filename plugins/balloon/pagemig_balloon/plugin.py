"""Entry point of pagemig-balloon: the balloon driver, QEMU's ``balloon N`` command and the
seed's experiment (``seed-balloon``, the default scenario of ``pagemig run``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pagemig.api import CommandInfo, DriverInfo, hookimpl, package_scenarios
from pagemig_balloon.driver import PAGES_PER_MIB, BalloonDriver
from pagemig_balloon.options import validate_options

PAGEMIG_API_VERSION = "1.0"  # the pagemig.api this plugin is written for (checked at discovery)

BALLOON_USAGE = "balloon MIB"


def balloon_validate(args: Sequence[str]) -> None:
    """Exactly one argument: the guest's memory target in MiB, a whole number above 0."""
    if len(args) != 1:
        raise ValueError("expected one argument, the guest's memory target in MiB (QEMU's `balloon 512`)")
    try:
        mib = int(args[0])
    except ValueError:
        raise ValueError(f"expected a whole number of MiB, got {args[0]!r} (QEMU's `balloon N` takes MiB "
                         "without a unit)") from None
    if mib <= 0:
        raise ValueError(f"expected a positive number of MiB, got {mib}")


def balloon_handler(run: Any, args: Sequence[str]) -> Mapping[str, Any]:
    """QEMU's monitor ``balloon N``: the guest should be left N MiB; the balloon inflates (or
    deflates) towards ``ram_size - N`` over the following steps, at its ``inflate_rate``."""
    driver: BalloonDriver = run.drivers["balloon"]
    mib = int(args[0])
    target = driver.set_target_mib(mib)
    return {"guest_target_mib": mib, "balloon_target_pages": target,
            "balloon_target_mib": target / PAGES_PER_MIB, "balloon_pages_now": len(driver.pages)}


@hookimpl
def pagemig_register_drivers(register: Callable[[Any], None]) -> None:
    register(DriverInfo(
        name="balloon",
        factory=BalloonDriver,
        description="virtio balloon (mm/balloon_compaction.c): inflate/deflate, host record, movable pages",
        validate=validate_options,
    ))


@hookimpl
def pagemig_register_commands(register: Callable[[Any], None]) -> None:
    register(CommandInfo(
        name="balloon",
        handler=balloon_handler,
        description="QEMU's monitor `balloon N`: leave the guest N MiB (the balloon holds the rest)",
        driver="balloon",
        validate=balloon_validate,
        usage=BALLOON_USAGE,
    ))


@hookimpl
def pagemig_register_scenarios(register: Callable[[Any], None]) -> None:
    for info in package_scenarios("pagemig_balloon"):
        register(info)
