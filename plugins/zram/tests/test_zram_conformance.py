"""The core's conformance kit, run against the installed zram distribution."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pagemig.testing import DriverConformance


class TestZramConformance(DriverConformance):
    entry_point = "zram"
    # not the machine's swap device: the kit drives the block device directly
    options: ClassVar[Mapping[str, Any]] = {"swap": False, "zero_fraction": 0.0}
