"""The result of a run: what the JSON file holds (schema in docs/results.md).

The top-level keys ``schema_version``, ``vmstat``, ``compactions``, ``drivers``,
``probes``, ``checker`` and ``timings`` are a stable interface that scripts rely on.
Everything but ``timings`` is a function of the scenario and its seed: two runs
give byte-identical JSON apart from that one section, which the determinism test
checks.  The per-pageblock maps behind the pictures stay out of the JSON (they are
large and only the figures need them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from pagemig.outputs import atomic_write_text

SCHEMA_VERSION = 1


@attrs.frozen
class PageblockMap:
    """One row per pageblock: its migratetype and how its pages are used, for the memory map."""

    pageblock_order: int
    migratetype: np.ndarray  # uint8 per pageblock
    used: np.ndarray  # in-use pages (neither free nor reserved), per pageblock
    driver: np.ndarray  # driver pages
    movable_driver: np.ndarray  # driver pages marked movable
    reserved: np.ndarray  # memblock-reserved pages or holes
    zone_starts: tuple[int, ...]  # first pageblock index of each zone
    zone_names: tuple[str, ...]

    @property
    def nr_blocks(self) -> int:
        return len(self.migratetype)


@attrs.define
class CompactionRecord:
    """One compaction: what triggered it, free memory before and after, what it did."""

    index: int
    trigger: str
    time: float
    before: dict[str, Any] = attrs.field(factory=dict)
    after: dict[str, Any] = attrs.field(factory=dict)
    counters: dict[str, int] = attrs.field(factory=dict)  # vmstat deltas over the compaction
    zones: list[dict[str, Any]] = attrs.field(factory=list)  # each zone run, as CompactControl.summary()
    simulated_seconds: float = 0.0  # the zone runs' simulated cost
    map_before: PageblockMap | None = attrs.field(default=None, repr=False, eq=False)
    map_after: PageblockMap | None = attrs.field(default=None, repr=False, eq=False)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "trigger": self.trigger, "time_s": self.time,
                "simulated_seconds": self.simulated_seconds, "before": self.before, "after": self.after,
                "counters": self.counters, "zones": self.zones}


@attrs.define
class RunResult:
    """Everything a run produced; ``as_dict()`` is the JSON document."""

    pagemig_version: str
    plugins: list[dict[str, Any]]
    scenario: dict[str, Any]
    seed: int
    machine: dict[str, Any]
    samples: list[dict[str, Any]]
    compactions: list[CompactionRecord]
    timeline: list[dict[str, Any]]
    workloads: dict[str, Any]
    vmstat: dict[str, int]
    drivers: dict[str, Any]
    probes: list[dict[str, Any]]
    checker: dict[str, Any]
    driver_faults: dict[str, int]
    migration: dict[str, Any]
    error: str | None
    timings: dict[str, float]
    maps: dict[str, PageblockMap] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.checker.get("ok"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "pagemig_version": self.pagemig_version,
            "plugins": self.plugins,
            "scenario": self.scenario,
            "seed": self.seed,
            "machine": self.machine,
            "error": self.error,
            "checker": self.checker,
            "vmstat": self.vmstat,
            "drivers": self.drivers,
            "probes": self.probes,
            "workloads": self.workloads,
            "compactions": [c.as_dict() for c in self.compactions],
            "timeline": self.timeline,
            "driver_faults": self.driver_faults,
            "migration": self.migration,
            "samples": self.samples,
            "timings": self.timings,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1, allow_nan=False) + "\n"

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path, self.to_json())


def without_timings(doc: dict[str, Any]) -> dict[str, Any]:
    """The part of a result document that must not change between runs of one seed."""
    return {k: v for k, v in doc.items() if k != "timings"}
