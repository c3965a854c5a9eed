"""What a workload plugin registers, and the base class the event loop steps.

A workload is a plugin's object that the event loop steps through simulated time:
``step(now, dt)`` emits the allocations and frees of the interval ``[now, now + dt)``,
in batches (bulk allocation wherever the kernel's own pattern allows it), never a
hook call per page.  Drivers have :mod:`pagemig.driver`; workloads have this module.
Both reach plugins through :mod:`pagemig.api`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np

from pagemig.mm.machine import Machine


@attrs.frozen
class WorkloadInfo:
    """A workload as a plugin registers it (``pagemig_register_workloads``).

    ``factory(machine, options, rng)`` builds one instance for a run; ``options`` is
    the scenario's table after ``validate`` (which raises ``ValueError``, ideally a
    :class:`pagemig.api.TableError`, naming the key, the value and what was
    expected); ``rng`` is the instance's own stream, split from the scenario's seed.
    """

    name: str
    factory: Callable[[Machine, Mapping[str, Any], np.random.Generator], Workload]
    description: str = ""
    validate: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    plugin: str = ""


class Workload:
    """Base class: a workload that does nothing until a subclass says otherwise."""

    def __init__(self, machine: Machine, options: Mapping[str, Any], rng: np.random.Generator) -> None:
        self.machine = machine
        self.options = dict(options)
        self.rng = rng
        self.name: str = str(self.options.get("name", type(self).__name__))

    def start(self, now: float) -> None:
        """The workload's start time has come (before its first ``step``)."""

    def step(self, now: float, dt: float) -> None:
        """Emit the allocations and frees of ``[now, now + dt)``."""

    def stop(self, now: float) -> None:
        """The workload's stop time has come: no more steps.  What it holds, it keeps,
        unless the workload's own model says its processes exit."""

    def idle(self, now: float, dt: float) -> None:
        """A step after the workload stopped: the kernel's work on its behalf goes on
        (the page cache's flusher writes back what the workload left dirty)."""

    def stats(self) -> dict[str, int | float]:
        """Figures for the result's ``workloads`` section."""
        return {}

    def probes(self) -> list[ProbeStats]:
        """Allocation probes this workload runs (``alloc_probe`` has one)."""
        return []


@attrs.define
class ProbeStats:
    """Attempts of one order and GFP mask, and how they went: what the result's ``probes`` holds."""

    name: str
    order: int
    gfp: str
    attempts: int = 0
    failures: int = 0
    latencies: list[float] = attrs.field(factory=list)  # simulated seconds per attempt

    def record(self, ok: bool, latency: float) -> None:
        self.attempts += 1
        if not ok:
            self.failures += 1
        self.latencies.append(latency)

    def as_dict(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies, dtype=np.float64) * 1e6
        latency: dict[str, float] = {}
        if len(lat):
            p50, p90, p99 = np.percentile(lat, [50, 90, 99]).tolist()
            latency = {"mean": round(float(lat.mean()), 3), "p50": round(p50, 3), "p90": round(p90, 3),
                       "p99": round(p99, 3), "max": round(float(lat.max()), 3)}
        return {
            "name": self.name,
            "order": self.order,
            "gfp": self.gfp,
            "attempts": self.attempts,
            "failures": self.failures,
            "success_rate": round(1 - self.failures / self.attempts, 6) if self.attempts else None,
            "latency_us": latency,
        }
