"""The core's conformance kit, run against the installed balloon distribution."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pagemig.testing import DriverConformance


class TestBalloonConformance(DriverConformance):
    entry_point = "balloon"
    options: ClassVar[Mapping[str, Any]] = {"inflate_rate": 0}
