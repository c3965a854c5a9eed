"""The core's conformance kit, run against the installed balloon distribution."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from pagemig.testing.conformance import DriverConformance


class TestBalloonConformance(DriverConformance):
    entry_point = "balloon"
    options: ClassVar[Mapping[str, Any]] = {"inflate_rate": 0}
    # At most 32 pages: the kit's -EAGAIN tests isolate every idle page but migrate only the
    # first 64 (32 when contended) and leave the rest isolated, which its own checker then reports.
    nr_pages = 32

    @pytest.mark.xfail(reason="kit bug (pagemig.testing.vm.migrate): after an injected -ENOMEM aborts a pass, "
                       "the pages not yet tried keep Outcome.rc's default 0 and are verified as migrated",
                       strict=False)
    def test_random_operations_never_lose_a_page(self) -> None:
        super().test_random_operations_never_lose_a_page()
