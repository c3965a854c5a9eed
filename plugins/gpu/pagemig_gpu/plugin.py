"""Entry point of pagemig-gpu: the GPU driver, its own `gpu_compact` command and the
`gpu-arm-1g` scenario (the seed's ARM device)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pagemig.api import CommandInfo, DriverInfo, hookimpl, package_scenarios
from pagemig_gpu.driver import GpuDriver
from pagemig_gpu.options import validate_options

PAGEMIG_API_VERSION = "1.0"  # the pagemig.api this plugin is written for (checked at discovery)


def gpu_compact_validate(args: Sequence[str]) -> None:
    """No argument, or the most pages to move."""
    if len(args) > 1:
        raise ValueError("expected no argument, or the most pages to move")
    if args:
        try:
            n = int(args[0])
        except ValueError:
            raise ValueError(f"expected a whole number of pages, got {args[0]!r}") from None
        if n <= 0:
            raise ValueError(f"expected a positive number of pages, got {n}")


def gpu_compact_handler(run: Any, args: Sequence[str]) -> Mapping[str, Any]:
    """The driver's own compaction (its sysfs file in 2015), recorded like any compaction."""
    driver: GpuDriver = run.drivers["gpu"]
    limit = int(args[0]) if args else None
    with run.compaction("gpu_compact") as record:
        moved = driver.gpu_compact(limit)
    return {"pages_moved": moved, "compaction": record.index}


@hookimpl
def pagemig_register_drivers(register: Callable[[Any], None]) -> None:
    register(DriverInfo(
        name="gpu",
        factory=GpuDriver,
        description="a mobile GPU driver: buffers of movable pages, DMA pins, job fences, its own compaction",
        validate=validate_options,
    ))


@hookimpl
def pagemig_register_commands(register: Callable[[Any], None]) -> None:
    register(CommandInfo(
        name="gpu_compact",
        handler=gpu_compact_handler,
        description="the GPU driver's own compaction (2015): reallocate idle buffers' pages, not cooperating "
                    "with kernel compaction",
        driver="gpu",
        validate=gpu_compact_validate,
        usage="gpu_compact [MAX_PAGES]",
    ))


@hookimpl
def pagemig_register_scenarios(register: Callable[[Any], None]) -> None:
    for info in package_scenarios("pagemig_gpu"):
        register(info)
