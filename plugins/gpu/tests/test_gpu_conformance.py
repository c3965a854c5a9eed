"""The core's conformance kit, run against the installed GPU distribution."""

from __future__ import annotations

from pagemig.testing import DriverConformance


class TestGpuConformance(DriverConformance):
    entry_point = "gpu"
