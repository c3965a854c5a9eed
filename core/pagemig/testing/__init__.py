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

A driver's tests import this package and :mod:`pagemig.api`, nothing else of the core:
besides the suite, it gives them a small machine (:func:`small_machine`), the checker
(``assert_consistent``) and the VM's side of the protocol, what compaction calls
(``isolate_movable_page``, ``migrate_movable_page``, ``putback_movable_page``).

Heavy imports (pytest, hypothesis) happen only when the suite is used, so that
``pagemig new-driver`` (:mod:`pagemig.cli.new_driver`) works without the test extras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pagemig.mm.invariants import assert_consistent
from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.movable import isolate_movable_page, migrate_movable_page, putback_movable_page
from pagemig.testing.exerciser import Exerciser
from pagemig.testing.rules import RULES, ConformanceError, Rule

if TYPE_CHECKING:
    from pagemig.testing.conformance import DriverConformance, host_for

__all__ = [
    "RULES",
    "ConformanceError",
    "DriverConformance",
    "Exerciser",
    "Rule",
    "assert_consistent",
    "host_for",
    "isolate_movable_page",
    "migrate_movable_page",
    "putback_movable_page",
    "small_machine",
]


def small_machine(mib: int = 128) -> Machine:
    """A fresh x86-64 guest of ``mib`` MiB, the page allocator alone (no reclaim, no
    compaction running by itself): what a driver's own unit tests start from."""
    return Machine(MachineConfig.x86_64_guest(mib * MiB))


def __getattr__(name: str) -> Any:
    if name in ("DriverConformance", "host_for"):
        from pagemig.testing import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module 'pagemig.testing' has no attribute {name!r}")
