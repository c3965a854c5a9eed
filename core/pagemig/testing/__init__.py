"""The conformance kit third-party drivers run (a pytest plugin installed with the core).

A driver's tests run the whole suite with::

    from pagemig.testing import DriverConformance
    import my_driver.plugin

    class TestConformance(DriverConformance):
        plugin = my_driver.plugin        # or: entry_point = "my_driver"

The driver implements the kit's small exerciser interface (``populate(n)``,
``release(n)``; see :mod:`pagemig.testing.exerciser`).  Each failure names the rule
that was broken (:mod:`pagemig.testing.rules`).  The pytest plugin
(:mod:`pagemig.testing.plugin`) adds fixtures for a driver's own tests.

Heavy imports (pytest, hypothesis) happen only when the suite is used, so that
``pagemig new-driver`` (:mod:`pagemig.cli.new_driver`) works without the test extras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pagemig.testing.exerciser import Exerciser
from pagemig.testing.rules import RULES, ConformanceError, Rule

if TYPE_CHECKING:
    from pagemig.testing.conformance import DriverConformance, host_for

__all__ = ["RULES", "ConformanceError", "DriverConformance", "Exerciser", "Rule", "host_for"]


def __getattr__(name: str) -> Any:
    if name in ("DriverConformance", "host_for"):
        from pagemig.testing import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module 'pagemig.testing' has no attribute {name!r}")
