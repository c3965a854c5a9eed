"""The event loop: a scenario on a simulated clock.

Each step of ``scenario.step`` simulated seconds, in this order:

1. timeline entries that are due (their ``at``/``after`` time has come and their
   ``when`` condition holds) run, in file order;
2. every active workload emits the allocations and frees of the step (its
   allocations go through the allocator's slow path: direct reclaim and direct
   compaction happen inside them, on the machine's stall clock);
3. every driver's ``tick`` (a balloon inflating towards its target, a GPU's jobs);
4. the background daemons: kswapd, kcompactd and proactive compaction
   (``pagemig.mm.vmscan.background_tick``);
5. the clock advances; a sample is taken at every ``[sample] interval``.

Randomness comes from one ``numpy.random.SeedSequence`` of the scenario's seed,
split per workload and per driver by name, so adding a workload does not change
another's stream, and the same seed gives the same run, byte for byte.
Wall-clock figures go only into ``timings``.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import numpy as np
import structlog

from pagemig import __version__
from pagemig.driver import Driver
from pagemig.hookspecs import hookimpl
from pagemig.mm.invariants import check
from pagemig.mm.movable import DriverError
from pagemig.mm.pages import PAGE_SIZE, PageKind
from pagemig.mm.vmscan import background_tick
from pagemig.mm.vmstat import free_state, vmstat_items
from pagemig.sim.observe import pageblock_map, usage_pages
from pagemig.sim.result import CompactionRecord, RunResult
from pagemig.sim.scenario import Scenario, TimelineEntry, WorkloadSpec
from pagemig.workload import Workload

log = structlog.get_logger(__name__)


EPS = 1e-9
ProgressFn = Callable[[float, float], None]


def _stream_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def compaction_trigger(cc: Any) -> str:
    """Who started a zone's compaction run, from its CompactControl."""
    if getattr(cc, "direct_compaction", False):
        return "direct"
    if getattr(cc, "proactive_compaction", False):
        return "proactive"
    if getattr(cc, "order", 0) == -1:
        return "compact_memory"
    return "kcompactd"


class CompactionObserver:
    """Records compactions as the compaction hooks report them (per zone run, never per page).

    Inside :meth:`Run.compaction` (a timeline command) zone runs are added to that
    command's record.  Otherwise kcompactd's and proactive compaction's runs of one
    step become one record, with free memory before the first and after the last.
    Direct compactions are not recorded one by one: they happen inside allocations,
    so a before/after pair would mostly show the allocations around them; the vmstat
    counters (``compact_stall``, ``compact_success``, ``compact_fail``) and the
    probes' latencies are their record.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.explicit: CompactionRecord | None = None
        self.episode: CompactionRecord | None = None
        self._episode_key: tuple[str, float] | None = None
        self._counters_before: dict[str, int] = {}

    @hookimpl
    def pagemig_compaction_begin(self, machine: Any, cc: Any) -> None:
        if machine is not self.run.machine or self.explicit is not None:
            return
        trigger = compaction_trigger(cc)
        if trigger == "direct":
            return
        key = (trigger, machine.now)
        if self._episode_key != key:
            self.close()
            self._episode_key = key
            self.episode = CompactionRecord(index=-1, trigger=trigger, time=machine.now)
            self.episode.before = free_state(machine)
            self._counters_before = dict(machine.vmstat)

    @hookimpl
    def pagemig_compaction_end(self, machine: Any, cc: Any, result: Any) -> None:
        if machine is not self.run.machine:
            return
        rec = self.explicit if self.explicit is not None else (
            self.episode if compaction_trigger(cc) != "direct" else None)
        if rec is None:
            return
        summary = cc.summary()
        rec.zones.append(summary)
        rec.simulated_seconds += float(summary.get("seconds", 0.0))
        if rec is self.episode:
            rec.after = free_state(machine)
            rec.counters = _delta(self._counters_before, machine.vmstat)

    def close(self) -> None:
        """The open background episode is complete: it joins the run's compactions."""
        if self.episode is not None:
            self.episode.index = len(self.run.compactions)
            self.run.compactions.append(self.episode)
        self.episode = None
        self._episode_key = None


def _delta(before: dict[str, int], after: Any) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v != before.get(k, 0)}


class Run:
    """One run of a scenario: the machine, its drivers and workloads, and what is recorded.

    Timeline command handlers and ``pagemig_run_start`` receive this object; what
    they may use: ``machine``, ``drivers`` (by name), ``workloads`` (by name),
    ``scenario``, ``now``, ``sample(reason)``, ``compaction(trigger)`` (a context
    manager that records free memory before and after whatever runs inside it) and
    ``rng(name)`` for a stream of their own.
    """

    def __init__(self, scenario: Scenario, host: Any) -> None:
        self.scenario = scenario
        self.host = host
        self.machine = scenario.machine.boot()
        coverage = scenario.machine.coverage
        if coverage and coverage.get("partial"):  # machine.allow_partial let it in: say what is invented
            for z in coverage["zones"]:
                if z["seen"] < z["managed"]:
                    log.warning("snapshot_partial", zone=z["zone"], seen=z["seen"], inferred=z["unseen"],
                                hint="the pages kpageflags does not show are inferred from buddyinfo and vmstat")
        self.full_mm = True  # the booted kernel: reclaim, slow path, daemons (the result says so)
        self.machine.movable.on_driver_error = scenario.on_driver_error
        self.machine.hook = host.hook  # compaction's policy hooks find it here
        self.drivers: dict[str, Driver] = {}
        self._drivers_seen_holding: set[str] = set()  # drivers that held pages at some sample
        self.workloads: dict[str, Workload] = {}
        self._specs: dict[str, WorkloadSpec] = {}
        self._active: list[str] = []
        self._pending: list[str] = []
        self._stopped: list[str] = []
        self.samples: list[dict[str, Any]] = []
        self.compactions: list[CompactionRecord] = []
        self.timeline: list[dict[str, Any]] = []
        self.maps: dict[str, Any] = {}
        self.error: str | None = None
        self.timings: dict[str, float] = {k: 0.0 for k in (
            "setup_s", "workloads_s", "drivers_s", "daemons_s", "commands_s", "compaction_s", "samples_s",
            "checker_s", "loop_s", "total_s")}
        self._next_entry = 0
        self._last_fired = 0.0
        self.observer = CompactionObserver(self)

    # ---------------------------------------------------------------- helpers for plugins
    @property
    def now(self) -> float:
        return self.machine.now

    def rng(self, name: str, kind: str = "plugin") -> np.random.Generator:
        """A random stream of its own for ``name``, derived from the scenario's seed."""
        seq = np.random.SeedSequence(self.scenario.seed, spawn_key=(_stream_key(kind), _stream_key(name)))
        return np.random.default_rng(seq)

    @contextlib.contextmanager
    def compaction(self, trigger: str) -> Iterator[CompactionRecord]:
        """Record a compaction: free memory and the pageblock map before and after the body,
        the vmstat counters it moved, and the zone runs the compaction hooks reported."""
        m = self.machine
        t0 = time.perf_counter()
        self.observer.close()
        rec = CompactionRecord(index=len(self.compactions), trigger=trigger, time=m.now)
        rec.before = {**free_state(m, pagetypes=True), "vmstat": dict(vmstat_items(m))}
        rec.map_before = pageblock_map(m)
        counters_before = dict(m.vmstat)
        self.observer.explicit = rec
        try:
            yield rec
        finally:
            self.observer.explicit = None
            rec.after = {**free_state(m, pagetypes=True), "vmstat": dict(vmstat_items(m))}
            rec.map_after = pageblock_map(m)
            rec.counters = _delta(counters_before, m.vmstat)
            self.compactions.append(rec)
            self.timings["compaction_s"] += time.perf_counter() - t0

    def sample(self, reason: str = "interval") -> dict[str, Any]:
        """Record buddyinfo, pagetypeinfo counts, vmstat, driver and probe figures now."""
        t0 = time.perf_counter()
        m = self.machine
        s: dict[str, Any] = {
            "time_s": m.now,
            "reason": reason,
            "used_pages": m.managed_pages - m.nr_free_pages,
            **free_state(m, pagetypes=True),
            "vmstat": dict(vmstat_items(m)),
            "drivers": {name: d.stats() for name, d in self.drivers.items()},
            "probes": {p.name: {"attempts": p.attempts, "failures": p.failures}
                       for w in self.workloads.values() for p in w.probes()},
        }
        self.samples.append(s)
        owners, kinds = m.pages.owner, m.pages.kind
        for name, d in self.drivers.items():  # (a free page's owner column holds its migratetype)
            if name not in self._drivers_seen_holding and np.any((owners == d.owner_id) & (kinds != PageKind.FREE)):
                self._drivers_seen_holding.add(name)
        self.timings["samples_s"] += time.perf_counter() - t0
        return s

    def _warn_idle_drivers(self) -> None:
        """One line for each loaded driver that held no page at any sample: something
        (`--set drivers.NAME...`, a copied scenario) loaded it, but nothing in the scenario
        made it allocate, so the run says nothing about it."""
        for name in self.drivers:
            if name not in self._drivers_seen_holding:
                log.warning("driver_held_no_pages", driver=name,
                            hint=f"nothing in this scenario makes {name} take pages: add the timeline command "
                                 "or workload that drives it (pagemig plugins lists what its plugin "
                                 "provides; docs/writing-a-driver.md, 'A driver in a shipped scenario')")

    # ---------------------------------------------------------------- set-up
    def _setup(self) -> None:
        host = self.host
        installed_drivers = host.drivers() if self.scenario.drivers else {}
        for spec in self.scenario.drivers:
            info = installed_drivers[spec.name]
            options = dict(spec.options)
            options.update(_plugin=info.plugin, _rng=self.rng(spec.name, "driver"))
            self.drivers[spec.name] = info.factory(self.machine, options)
        installed = host.workloads() if self.scenario.workloads else {}
        for wspec in self.scenario.workloads:
            winfo = installed[wspec.type]
            options = dict(wspec.options)
            options["name"] = wspec.name
            self.workloads[wspec.name] = winfo.factory(self.machine, options, self.rng(wspec.name, "workload"))
            self._specs[wspec.name] = wspec
            self._pending.append(wspec.name)

    # ---------------------------------------------------------------- the timeline
    def _due(self, entry: TimelineEntry, now: float) -> bool:
        due = 0.0 if entry.at is None else entry.at
        if entry.after is not None:
            due = max(due, self._last_fired + entry.after)
        if now + EPS < due:
            return False
        if entry.when is not None:
            value = usage_pages(self.machine, entry.when.metric)
            return entry.when.holds(value, self.machine.managed_pages)
        return True

    def _fire_timeline(self, now: float) -> None:
        entries = self.scenario.timeline
        while self._next_entry < len(entries) and self._due(entries[self._next_entry], now):
            entry = entries[self._next_entry]
            self._next_entry += 1
            self._last_fired = now
            self.run_command(entry)

    def run_command(self, entry: TimelineEntry) -> None:
        t0 = time.perf_counter()
        info = self.host.commands()[entry.command]
        log.info("timeline_command", time=self.machine.now, command=entry.line)
        try:
            out = info.handler(self, entry.args)
        finally:
            self.machine.movable.raise_if_failed()
            self.timings["commands_s"] += time.perf_counter() - t0
        self.timeline.append({"time_s": self.machine.now, "command": entry.line, "result": dict(out or {})})

    # ---------------------------------------------------------------- the loop
    def _workloads_step(self, now: float, dt: float) -> None:
        for name in list(self._pending):
            spec = self._specs[name]
            if spec.start <= now + EPS:
                self._pending.remove(name)
                self._active.append(name)
                self.workloads[name].start(now)
        for name in list(self._active):
            spec = self._specs[name]
            w = self.workloads[name]
            if spec.stop is not None and spec.stop <= now + EPS:
                w.stop(now)
                self._active.remove(name)
                self._stopped.append(name)
                continue
            w.step(now, dt)
        for name in self._stopped:
            self.workloads[name].idle(now, dt)

    def _step(self, now: float, dt: float) -> None:
        m = self.machine
        m.now = now
        self.observer.close()
        self._fire_timeline(now)
        t0 = time.perf_counter()
        self._workloads_step(now, dt)
        t1 = time.perf_counter()
        for d in self.drivers.values():
            d.tick(now)
        t2 = time.perf_counter()
        background_tick(m, now)
        t3 = time.perf_counter()
        self.timings["workloads_s"] += t1 - t0
        self.timings["drivers_s"] += t2 - t1
        self.timings["daemons_s"] += t3 - t2
        m.movable.raise_if_failed()

    def execute(self, progress: ProgressFn | None = None) -> RunResult:
        """Run the scenario to its end (or to a driver failure under ``on_driver_error = "fail"``)."""
        t_start = time.perf_counter()
        self._setup()
        self.host.pm.register(self.observer, name=f"pagemig-run-{id(self):x}")
        try:
            return self._execute(progress, t_start)
        finally:
            self.host.pm.unregister(self.observer)

    def _execute(self, progress: ProgressFn | None, t_start: float) -> RunResult:
        sc = self.scenario
        self.host.hook.pagemig_run_start(run=self)
        self.maps["start"] = pageblock_map(self.machine)
        self.timings["setup_s"] = time.perf_counter() - t_start
        t_loop = time.perf_counter()
        self.sample("start")
        n_steps = int(np.ceil(sc.duration / sc.step - EPS))
        next_sample = sc.sample_interval
        try:
            for k in range(n_steps):
                now = k * sc.step
                dt = min(sc.step, sc.duration - now)
                self._step(now, dt)
                now = min(sc.duration, (k + 1) * sc.step)
                self.machine.now = now
                if now + EPS >= next_sample:
                    self.sample()
                    while next_sample <= now + EPS:
                        next_sample += sc.sample_interval
                if progress is not None:
                    progress(now, sc.duration)
            self.machine.now = sc.duration
            self._fire_timeline(sc.duration)  # entries at the very end of the run
        except DriverError as exc:
            self.error = str(exc)
            log.error("run_stopped", reason="driver_error", error=str(exc))
        self.observer.close()
        if self.samples[-1]["time_s"] < self.machine.now:
            self.sample("end")
        self._warn_idle_drivers()
        self.maps["end"] = pageblock_map(self.machine)
        self.timings["loop_s"] = time.perf_counter() - t_loop
        t0 = time.perf_counter()
        report = check(self.machine)
        self.timings["checker_s"] = time.perf_counter() - t0
        self.timings["total_s"] = time.perf_counter() - t_start
        result = self._result(report.as_dict())
        self.host.hook.pagemig_run_end(run=self, result=result)
        self.machine.movable.log_fault_summary()  # the counts behind the rate-limited driver_misbehaved lines
        log.info("run_done", scenario=sc.name, seed=sc.seed, simulated_s=self.machine.now,
                 wall_s=round(self.timings["total_s"], 3), checker_ok=report.ok, error=self.error)
        return result

    def _machine_summary(self) -> dict[str, Any]:
        m = self.machine
        return {
            "nr_pages": m.nr_pages,
            "managed_pages": m.managed_pages,
            "pageblock_order": m.pageblock_order,
            "full_mm": self.full_mm,
            "sysctl": attrs.asdict(m.sysctl),
            "zones": [{"name": z.name, "start_pfn": z.start_pfn, "spanned_pages": z.spanned_pages,
                       "managed_pages": z.managed_pages, "min": z.wmark_min, "low": z.wmark_low,
                       "high": z.wmark_high} for z in m.zones],
        }

    def _migration(self) -> dict[str, Any]:
        """What migration moved over the whole run: driver pages per driver, and the rest
        (LRU and other pages the core moves itself), in pages and MiB."""
        mib = PAGE_SIZE / (1 << 20)
        total = int(self.machine.vmstat["pgmigrate_success"])
        by_driver = {getattr(d, "name", name): 0 for name, d in self.drivers.items()}
        by_driver.update(self.machine.movable.migrated_by_driver())
        other = total - sum(by_driver.values())
        return {"pages": total, "mib": round(total * mib, 3),
                "driver_pages": {k: {"pages": v, "mib": round(v * mib, 3)} for k, v in by_driver.items()},
                "other_pages": other, "other_mib": round(other * mib, 3)}

    def _result(self, checker: dict[str, Any]) -> RunResult:
        plugins = [{"name": r.name, "distribution": r.distribution, "version": r.version, "builtin": r.builtin,
                    "error": r.error} for r in self.host.listing()]
        drivers = {}
        for name, d in self.drivers.items():
            drivers[name] = {"plugin": getattr(d, "plugin", ""), "movable": bool(getattr(d, "movable", True)),
                             **d.stats()}
        workloads = {name: {"type": self._specs[name].type, **w.stats()} for name, w in self.workloads.items()}
        probes = [p.as_dict() for w in self.workloads.values() for p in w.probes()]
        faults = {"/".join(k): v for k, v in sorted(self.machine.movable.faults.items())}
        return RunResult(
            migration=self._migration(),
            pagemig_version=__version__,
            plugins=plugins,
            scenario=self.scenario.resolved(),
            seed=self.scenario.seed,
            machine=self._machine_summary(),
            samples=self.samples,
            compactions=self.compactions,
            timeline=self.timeline,
            workloads=workloads,
            vmstat=dict(vmstat_items(self.machine)),
            drivers=drivers,
            probes=probes,
            checker=checker,
            driver_faults=faults,
            error=self.error,
            timings={k: round(v, 6) for k, v in self.timings.items()},
            maps=self.maps,
        )


def run_scenario(scenario: Scenario, host: Any, *, progress: ProgressFn | None = None) -> RunResult:
    """Build the machine, drivers and workloads of a scenario and run it to the end."""
    return Run(scenario, host).execute(progress)
