"""The core's conformance kit, run against the installed balloon distribution."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pagemig.testing.conformance import DriverConformance


class TestBalloonConformance(DriverConformance):
    entry_point = "balloon"
    options: ClassVar[Mapping[str, Any]] = {"inflate_rate": 0}
    # At most 32 pages: the kit's -EAGAIN tests isolate every idle page but migrate only the
    # first 64 (32 when contended) and leave the rest isolated, which its own checker then reports.
    nr_pages = 32
