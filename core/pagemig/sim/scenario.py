"""Scenario files: TOML in, a validated :class:`Scenario` out, or one clear error.

The loader reads the file (a path, or the name of a scenario shipped by the core
or a plugin), applies ``--set KEY=VALUE`` overrides to the parsed TOML, and checks
every table.  The first problem found is raised as :class:`ScenarioError` naming the
file, the dotted key, the value and what was expected, with a suggestion for a
near-miss key; the CLI prints it and exits with status 2, without a traceback.

Overrides act on the TOML, not on the validated scenario, so a value given on the
command line is checked exactly as if it had been written in the file.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import importlib.resources
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import attrs

from pagemig.mm.machine import Machine, MachineConfig
from pagemig.mm.mm_init import boot
from pagemig.mm.pages import MAX_ORDER, PAGE_SIZE
from pagemig.mm.sysctl import SYSCTL_NAMES, SYSCTL_TABLE
from pagemig.mm.zone import ZoneSpec
from pagemig.sim import schema, units
from pagemig.sim.commands import CommandInfo, split_command
from pagemig.sim.schema import Field, TableError, join_key, show_value

MIN_MEMORY = {"x86_64-guest": 64 << 20, "arm32-device": 32 << 20}
MAX_MEMORY = 256 << 30
MAX_STEPS = 1_000_000
PRESETS = ("x86_64-guest", "arm32-device")



class ScenarioError(Exception):
    """A scenario that cannot run, with a message for people: file, key, value, expectation."""

    def __init__(self, message: str, *, file: str = "", key: str = "") -> None:
        self.file = file
        self.key = key
        super().__init__(f"{file}: {message}" if file else message)


# ------------------------------------------------------------------ shipped scenarios
@attrs.frozen
class ScenarioInfo:
    """A scenario file that the core or a plugin ships (``pagemig_register_scenarios``)."""

    name: str
    path: Traversable | Path
    description: str = ""
    plugin: str = ""

    def read_description(self) -> str:
        """The file's own ``description`` (for ``pagemig scenarios``) unless one was registered."""
        if self.description:
            return self.description
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            return f"(unreadable: {exc})"
        return str(data.get("description", "")).strip().splitlines()[0] if data.get("description") else ""


def package_scenarios(package: str, folder: str = "scenarios") -> list[ScenarioInfo]:
    """Every ``*.toml`` in a package's ``scenarios/`` folder, named after the file.

    What a plugin's ``pagemig_register_scenarios`` usually does::

        @hookimpl
        def pagemig_register_scenarios(register):
            for info in package_scenarios("pagemig_balloon"):
                register(info)
    """
    root = importlib.resources.files(package) / folder
    if not root.is_dir():
        return []
    items = [p for p in root.iterdir() if p.name.endswith(".toml")]
    return [ScenarioInfo(name=p.name.removesuffix(".toml"), path=p) for p in sorted(items, key=lambda p: p.name)]


def shipped_scenarios(host: Any) -> dict[str, ScenarioInfo]:
    """Every registered scenario, by name, each knowing which plugin shipped it (the
    plugin host collects them plugin by plugin, so one plugin whose hook raises loses
    only its own scenarios)."""
    return host.scenarios()


DEFAULT_SCENARIOS = ("seed-balloon", "frag-1g")


def default_scenario_name(shipped: Mapping[str, ScenarioInfo]) -> str:
    """The seed's experiment when the balloon plugin provides it, else ``frag-1g``."""
    for name in DEFAULT_SCENARIOS:
        if name in shipped:
            return name
    raise ScenarioError("no default scenario is installed (frag-1g ships with the core: is the install broken?)")


def locate(ref: str, shipped: Mapping[str, ScenarioInfo]) -> tuple[str, str, ScenarioInfo | None]:
    """Find a scenario by path or shipped name: returns (text, label for messages, info)."""
    path = Path(ref)
    looks_like_path = ref.endswith(".toml") or "/" in ref or path.exists()
    if looks_like_path:
        try:
            return path.read_text(encoding="utf-8"), ref, None
        except FileNotFoundError:
            raise ScenarioError(f"no such file: {ref}") from None
        except OSError as exc:
            raise ScenarioError(f"cannot read {ref}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ScenarioError(f"{ref} is not UTF-8 text (is it a TOML scenario file?)") from None
    info = shipped.get(ref)
    if info is None:
        names = sorted(shipped)
        close = difflib.get_close_matches(ref, names, n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        raise ScenarioError(f"{ref!r} is neither a file nor a shipped scenario; {hint}"
                            f"shipped: {', '.join(names) or '(none)'} (see `pagemig scenarios`)")
    return info.path.read_text(encoding="utf-8"), f"{ref} ({info.plugin or 'shipped'})", info


# ------------------------------------------------------------------ --set overrides
GLOB_CHARS = "*?["


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"drivers.*.movable=false"`` -> (["drivers", "*", "movable"], False).

    The value is read as a TOML value when it is one (numbers, booleans, quoted
    strings, arrays), otherwise as a bare string, so ``duration=10min`` works
    without quotes.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ScenarioError(f"--set {text!r}: expected KEY=VALUE, e.g. --set machine.memory=2GiB")
    path = key.split(".")
    if any(not p for p in path):
        raise ScenarioError(f"--set {text!r}: {key!r} is not a dotted key")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A deep copy of ``data`` with each ``KEY=VALUE`` applied in order.

    A key segment with ``*``, ``?`` or ``[`` is a glob over the keys that exist at
    that level (``drivers.*.movable``), and must match at least one; in an array of
    tables a segment is an index (``workloads.0``) or an item's ``name``/``type``.
    """
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        matched = _set_path(data, path, value, text)
        if not matched:
            raise ScenarioError(f"--set {text!r}: no key of the scenario matches {'.'.join(path)!r}")
    return data


def _children(node: Any, segment: str, text: str) -> list[tuple[Any, Any]]:
    """(container, key) pairs a segment selects in ``node``."""
    if isinstance(node, dict):
        if any(c in segment for c in GLOB_CHARS):
            return [(node, k) for k in node if fnmatch.fnmatchcase(str(k), segment)]
        return [(node, segment)]
    if isinstance(node, list):
        if segment.isdigit():
            i = int(segment)
            if i >= len(node):
                raise ScenarioError(f"--set {text!r}: index {i} is past the end (the array has {len(node)} items)")
            return [(node, i)]
        out = []
        for i, item in enumerate(node):
            label = item.get("name", item.get("type")) if isinstance(item, dict) else None
            if label is not None and fnmatch.fnmatchcase(str(label), segment):
                out.append((node, i))
        return out
    raise ScenarioError(f"--set {text!r}: {segment!r} is inside a value that is not a table")


def _set_path(node: Any, path: list[str], value: Any, text: str) -> int:
    segment, rest = path[0], path[1:]
    matched = 0
    for container, key in _children(node, segment, text):
        if not rest:
            container[key] = copy.deepcopy(value)
            matched += 1
            continue
        if isinstance(container, dict) and key not in container:
            container[key] = {}
        matched += _set_path(container[key], rest, value, text)
    return matched


# ------------------------------------------------------------------ the validated scenario
@attrs.frozen
class MachineSpec:
    preset: str | None
    memory: int  # bytes
    zones: tuple[ZoneSpec, ...] | None  # explicit zones (else the preset's)
    reserved: tuple[tuple[int, int], ...] | None  # explicit (start_pfn, nr_pages) reservations
    pageblock_order: int | None
    sysctl: Mapping[str, int]
    snapshot: str | None = None  # a snapshot directory: the machine is imported from it
    allow_partial: bool = False  # machine.allow_partial: a kpageflags short of the zones is accepted
    coverage: Mapping[str, Any] | None = None  # what the snapshot shows and what its import infers

    def config(self) -> MachineConfig:
        """The MachineConfig this spec describes."""
        kw: dict[str, Any] = {}
        if self.pageblock_order is not None:
            kw["pageblock_order"] = self.pageblock_order
        sysctl = dict(self.sysctl)
        if "min_free_kbytes" in sysctl:
            kw["min_free_kbytes"] = sysctl.pop("min_free_kbytes")
        kw["sysctl"] = sysctl
        if self.zones is not None:
            return MachineConfig(zones=self.zones, reserved=self.reserved or (), **kw)
        if self.preset == "arm32-device":
            cfg = MachineConfig.arm32_device(self.memory, **kw)
        else:
            cfg = MachineConfig.x86_64_guest(self.memory, **kw)
        if self.reserved is not None:
            cfg = attrs.evolve(cfg, reserved=self.reserved)
        return cfg

    def boot(self) -> Machine:
        """The machine, booted: a preset's or explicit zones' (:meth:`config`), or one
        imported from a real machine's snapshot with the scenario's tunables written
        after the import.  The event loop starts from what this returns and never asks
        where it came from."""
        if self.snapshot is None:
            return boot(self.config())
        from pagemig.snapshot import machine_from_snapshot

        machine, _ = machine_from_snapshot(self.snapshot, allow_partial=self.allow_partial)
        for name, value in self.sysctl.items():
            machine.set_sysctl(name, value)
        return machine


@attrs.frozen
class DriverSpec:
    name: str
    movable: bool
    options: Mapping[str, Any]
    plugin: str = ""


@attrs.frozen
class WorkloadSpec:
    name: str  # this instance's name (unique in the scenario)
    type: str  # the registered workload
    start: float
    stop: float | None
    options: Mapping[str, Any]
    plugin: str = ""


CONDITION_METRICS = ("used", "free", "anon", "file", "slab", "kernel", "driver", "pagetables")
CONDITION_OPS = (">=", "<=", ">", "<")


@attrs.frozen
class Condition:
    """``when = "used > 512MiB"``: checked at every step once the entry is due."""

    metric: str
    op: str
    pages: int | None  # an absolute threshold
    fraction: float | None  # or a share of managed memory ("10%")
    text: str

    def threshold(self, managed_pages: int) -> int:
        return self.pages if self.pages is not None else round((self.fraction or 0.0) * managed_pages)

    def holds(self, value: int, managed_pages: int) -> bool:
        limit = self.threshold(managed_pages)
        return {">": value > limit, ">=": value >= limit, "<": value < limit, "<=": value <= limit}[self.op]


@attrs.frozen
class TimelineEntry:
    index: int
    line: str
    command: str
    args: tuple[str, ...]
    at: float | None
    after: float | None
    when: Condition | None
    plugin: str = ""


@attrs.frozen
class Scenario:
    name: str
    description: str
    source: str  # the shipped name or the path as given
    seed: int
    duration: float
    step: float
    sample_interval: float
    on_driver_error: str
    machine: MachineSpec
    drivers: tuple[DriverSpec, ...]
    workloads: tuple[WorkloadSpec, ...]
    timeline: tuple[TimelineEntry, ...]
    raw: Mapping[str, Any]  # the TOML after overrides, before validation
    overrides: tuple[str, ...] = ()

    def resolved(self) -> dict[str, Any]:
        """The scenario as the run used it, for the result file: every default filled in,
        sizes in bytes and times in seconds, alongside the TOML it came from."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "overrides": list(self.overrides),
            "seed": self.seed,
            "duration_s": self.duration,
            "step_s": self.step,
            "sample_interval_s": self.sample_interval,
            "on_driver_error": self.on_driver_error,
            "machine": {
                "preset": self.machine.preset,
                "memory_bytes": self.machine.memory,
                "zones": None if self.machine.zones is None else [
                    {"name": z.name, "start_pfn": z.start_pfn, "nr_pages": z.nr_pages} for z in self.machine.zones],
                "reserved": None if self.machine.reserved is None else [list(r) for r in self.machine.reserved],
                "pageblock_order": self.machine.pageblock_order,
                "sysctl": dict(self.machine.sysctl),
                "snapshot": self.machine.snapshot,
                **({} if self.machine.snapshot is None else {
                    "allow_partial": self.machine.allow_partial, "coverage": _jsonable(self.machine.coverage)}),
            },
            "drivers": {d.name: {"plugin": d.plugin, "movable": d.movable, "options": _jsonable(d.options)}
                        for d in self.drivers},
            "workloads": [{"name": w.name, "type": w.type, "plugin": w.plugin, "start_s": w.start,
                           "stop_s": w.stop, "options": _jsonable(w.options)} for w in self.workloads],
            "timeline": [{"command": t.line, "at_s": t.at, "after_s": t.after,
                          "when": t.when.text if t.when else None} for t in self.timeline],
            "toml": _jsonable(self.raw),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


# ------------------------------------------------------------------ loading
TOP_FIELDS: dict[str, Field] = {
    "name": schema.string("", "the scenario's name (default: the file name)"),
    "description": schema.string("", "one line for `pagemig scenarios`, more for the reader"),
    "seed": schema.integer(0, "the random seed", minimum=0, maximum=2**63 - 1),
    "duration": schema.duration("1min", "simulated time the run covers", positive=True),
    "step": schema.duration("1s", "simulated time per step of the event loop", positive=True),
    "on_driver_error": schema.choice(("isolate", "fail"), "isolate",
                                     "a driver breaking the protocol: quarantine the page and go on, or stop"),
}
TABLE_KEYS = ("machine", "drivers", "workloads", "timeline", "sample")

MACHINE_FIELDS: dict[str, Field] = {
    "preset": schema.choice(PRESETS, None, "x86_64-guest (DMA + DMA32 + Normal) or arm32-device (one Normal zone)"),
    "memory": schema.size(None, "memory size, e.g. \"1GiB\""),
    "zones": Field(lambda v: v, None, "an array of zone tables", "explicit zones instead of a preset"),
    "reserved": Field(lambda v: v, None, "an array of {start, size} tables", "memblock reservations"),
    "pageblock_order": schema.integer(None, "9 (x86-64), 10 (ARM without hugetlb)", minimum=1, maximum=MAX_ORDER),
    "snapshot": schema.string(None, "a snapshot directory (`pagemig snapshot capture`, or raw /proc files): "
                                    "start from a real machine's memory instead of a preset"),
    "allow_partial": schema.boolean(False, "with machine.snapshot: accept a kpageflags that shows fewer pfns "
                                           "than the zones manage, the rest inferred from buddyinfo and vmstat "
                                           "(the result's machine.coverage says how much)"),
}
for _tunable in SYSCTL_TABLE:  # /proc/sys/vm, ranged as the kernel's sysctl table clamps them
    MACHINE_FIELDS[_tunable.name] = schema.integer(None, _tunable.doc, minimum=_tunable.minimum,
                                                   maximum=_tunable.maximum)
del _tunable

ZONE_FIELDS: dict[str, Field] = {
    "name": schema.choice(("DMA", "DMA32", "Normal", "HighMem", "Movable"), doc="the zone"),
    "size": schema.size(doc="its span"),
    "start": schema.size(None, "where it starts (default: where the previous zone ends)"),
}
RESERVED_FIELDS: dict[str, Field] = {
    "start": schema.size(doc="physical address where the reservation starts"),
    "size": schema.size(doc="its size"),
}
SAMPLE_FIELDS: dict[str, Field] = {
    "interval": schema.duration("10s", "simulated time between samples", positive=True),
}
WORKLOAD_COMMON = ("type", "name", "start", "stop")
TIMELINE_FIELDS: dict[str, Field] = {
    "command": schema.string(doc="a command line such as \"compact\" or \"balloon 512\""),
    "at": schema.duration(None, "simulated time at which it runs"),
    "after": schema.duration(None, "simulated time after the previous entry ran"),
    "when": schema.string(None, "a condition such as \"used > 512MiB\""),
}


class _Loader:
    """One loading pass: knows the file label for messages and which keys came from --set."""

    def __init__(self, label: str, overridden: Iterable[str], host: Any) -> None:
        self.label = label
        self.overridden = list(overridden)
        self.host = host

    def error(self, message: str, key: str = "") -> ScenarioError:
        origin = ""
        for text in self.overridden:
            k = text.partition("=")[0]
            if key and (fnmatch.fnmatchcase(key, k) or key.startswith(k + ".") or key.startswith(k + "[")):
                origin = f" (from --set {text})"
                break
        return ScenarioError(message + origin, file=self.label, key=key)

    def table_error(self, exc: TableError, prefix: str) -> ScenarioError:
        full = join_key(prefix, exc.key)
        return self.error(exc.describe(full), full)

    def check(self, table: Any, fields: Mapping[str, Field], prefix: str, *, extra_ok: bool = False) -> dict[str, Any]:
        try:
            return schema.check_table(table, fields, extra_ok=extra_ok)
        except TableError as exc:
            raise self.table_error(exc, prefix) from None

    # -------------------------------------------------------------- sections
    def load(self, data: dict[str, Any], *, name: str, source: str, overrides: Sequence[str]) -> Scenario:
        top_fields = dict(TOP_FIELDS)
        for key in TABLE_KEYS:
            top_fields[key] = Field(lambda v: v, None)
        top = self.check(data, top_fields, "")
        machine = self.machine(data.get("machine", {}))
        drivers = self.drivers(data.get("drivers", {}))
        workloads = self.workloads(data.get("workloads", []), top["duration"])
        timeline = self.timeline(data.get("timeline", []), drivers, top["duration"])
        sample = self.check(data.get("sample", {}), SAMPLE_FIELDS, "sample")
        steps = top["duration"] / top["step"]
        if top["step"] > top["duration"]:
            raise self.error(f"step = {show_value(data.get('step'))}: expected at most the duration "
                             f"({units.format_duration(top['duration'])})", "step")
        if steps > MAX_STEPS:
            raise self.error(f"duration / step = {steps:,.0f} steps: expected at most {MAX_STEPS:,}; "
                             "use a longer step or a shorter duration", "step")
        return Scenario(
            name=top["name"] or name, description=top["description"].strip(), source=source,
            seed=top["seed"], duration=top["duration"], step=top["step"],
            sample_interval=sample["interval"], on_driver_error=top["on_driver_error"],
            machine=machine, drivers=drivers, workloads=workloads, timeline=timeline,
            raw=data, overrides=tuple(overrides),
        )

    def machine(self, table: Any) -> MachineSpec:
        m = self.check(table, MACHINE_FIELDS, "machine")
        sysctl = {k: m[k] for k in SYSCTL_NAMES if m[k] is not None}
        if m["snapshot"] is not None:
            return self.snapshot_machine(m, sysctl)
        if m["allow_partial"]:
            raise self.error("machine.allow_partial: applies to a machine imported from machine.snapshot, "
                             "and this machine has none", "machine.allow_partial")
        pbo = m["pageblock_order"]
        zones: tuple[ZoneSpec, ...] | None = None
        if m["zones"] is not None:
            if m["preset"] is not None:
                raise self.error("machine.zones: give either a preset or explicit zones, not both", "machine.zones")
            zones = self.zones(m["zones"])
            total = sum(z.nr_pages for z in zones) * PAGE_SIZE
            end = max(z.end_pfn for z in zones) * PAGE_SIZE
            if m["memory"] is not None and m["memory"] != end:
                raise self.error(f"machine.memory = {show_value(table.get('memory'))}: expected the zones' end "
                                 f"({units.format_size(end)}; they span {units.format_size(total)})",
                                 "machine.memory")
            memory = end
            preset = None
        else:
            preset = m["preset"] or "x86_64-guest"
            if m["memory"] is None:
                raise self.error('machine.memory: missing; expected a size such as "1GiB" '
                                 "(or explicit machine.zones)", "machine.memory")
            memory = m["memory"]
            lo = MIN_MEMORY[preset]
            if memory < lo:
                raise self.error(f"machine.memory = {show_value(table.get('memory'))}: expected at least "
                                 f"{units.format_size(lo)} for the {preset} preset", "machine.memory")
        if memory > MAX_MEMORY:
            raise self.error(f"machine.memory = {show_value(table.get('memory', units.format_size(memory)))}: "
                             f"expected at most {units.format_size(MAX_MEMORY)} (16 bytes of state per page)",
                             "machine.memory")
        if memory % PAGE_SIZE:
            raise self.error(f"machine.memory = {show_value(table.get('memory'))}: expected a whole number of "
                             "4KiB pages", "machine.memory")
        reserved = self.reserved(m["reserved"], memory) if m["reserved"] is not None else None
        return MachineSpec(preset=preset, memory=memory, zones=zones, reserved=reserved, pageblock_order=pbo,
                           sysctl=sysctl)

    def snapshot_machine(self, m: Mapping[str, Any], sysctl: Mapping[str, int]) -> MachineSpec:
        """``machine.snapshot``: the layout comes from the snapshot, so nothing else may give one.
        The snapshot is read here (not imported) so that a bad directory is a scenario error."""
        from pagemig.snapshot import SnapshotFormatError, load_snapshot
        from pagemig.snapshot.render import coverage_json

        for key in ("preset", "memory", "zones", "reserved", "pageblock_order"):
            if m[key] is not None:
                raise self.error(f"machine.{key}: the snapshot gives the machine's layout; drop machine.{key} "
                                 "or machine.snapshot", f"machine.{key}")
        path = Path(m["snapshot"]).expanduser()
        if not path.is_absolute() and Path(self.label).is_file():
            path = Path(self.label).resolve().parent / path
        if not path.is_dir():
            raise self.error(f"machine.snapshot = {show_value(m['snapshot'])}: expected a snapshot directory "
                             f"({path} is not one)", "machine.snapshot")
        try:
            snap = load_snapshot(path, allow_partial=m["allow_partial"])
        except SnapshotFormatError as exc:
            raise self.error(f"machine.snapshot = {show_value(m['snapshot'])}: {exc}", "machine.snapshot") from None
        end = max((z.start_pfn or 0) + z.spanned for z in snap.populated_zones)
        return MachineSpec(preset=None, memory=end * PAGE_SIZE, zones=None, reserved=None, pageblock_order=None,
                           sysctl=sysctl, snapshot=str(path), allow_partial=m["allow_partial"],
                           coverage=coverage_json(snap))

    def zones(self, value: Any) -> tuple[ZoneSpec, ...]:
        if not isinstance(value, list) or not value:
            raise self.error(f"machine.zones = {show_value(value)}: expected a non-empty array of tables such as "
                             '[{name = "Normal", size = "1GiB"}]', "machine.zones")
        out: list[ZoneSpec] = []
        pfn = 0
        for i, z in enumerate(value):
            key = f"machine.zones[{i}]"
            t = self.check(z, ZONE_FIELDS, key)
            start = pfn if t["start"] is None else t["start"] // PAGE_SIZE
            if t["size"] == 0 or t["size"] % PAGE_SIZE or (t["start"] or 0) % PAGE_SIZE:
                raise self.error(f"{key}: expected a non-zero size and start in whole 4KiB pages", key)
            if start < pfn:
                raise self.error(f"{key}.start = {show_value(z.get('start'))}: overlaps the zone before it", key)
            spec = ZoneSpec(t["name"], start, t["size"] // PAGE_SIZE)
            if out and spec.zone_type <= out[-1].zone_type:
                raise self.error(f"{key}.name = {show_value(t['name'])}: expected zones in the kernel's order "
                                 "(DMA, DMA32, Normal, HighMem, Movable), each once", f"{key}.name")
            out.append(spec)
            pfn = spec.end_pfn
        return tuple(out)

    def reserved(self, value: Any, memory: int) -> tuple[tuple[int, int], ...]:
        if not isinstance(value, list):
            raise self.error(f"machine.reserved = {show_value(value)}: expected an array of tables such as "
                             '[{start = "16MiB", size = "24MiB"}]', "machine.reserved")
        out = []
        for i, r in enumerate(value):
            key = f"machine.reserved[{i}]"
            t = self.check(r, RESERVED_FIELDS, key)
            if t["start"] % PAGE_SIZE or t["size"] % PAGE_SIZE or t["start"] + t["size"] > memory:
                raise self.error(f"{key}: expected whole 4KiB pages inside memory", key)
            out.append((t["start"] // PAGE_SIZE, t["size"] // PAGE_SIZE))
        return tuple(out)

    def drivers(self, table: Any) -> tuple[DriverSpec, ...]:
        if not isinstance(table, Mapping):
            raise self.error(f"drivers = {show_value(table)}: expected tables such as [drivers.balloon]", "drivers")
        installed = self.host.drivers() if table else {}
        out = []
        for name, options in table.items():
            key = f"drivers.{name}"
            info = installed.get(name)
            if info is None:
                close = difflib.get_close_matches(name, list(installed), n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                raise self.error(f"{key}: unknown driver {name!r}; {hint}installed drivers: "
                                 f"{', '.join(sorted(installed)) or '(none)'} (see `pagemig plugins`)", key)
            if not isinstance(options, Mapping):
                raise self.error(f"{key} = {show_value(options)}: expected a table ([{key}])", key)
            movable = options.get("movable", True)
            if not isinstance(movable, bool):
                raise self.error(f"{key}.movable = {show_value(movable)}: expected true or false", f"{key}.movable")
            table_in = dict(options)
            table_in["movable"] = movable
            validated = self.plugin_validate(info.validate, table_in, key, f"driver {name!r}")
            validated = dict(validated)
            validated.setdefault("movable", movable)
            out.append(DriverSpec(name=name, movable=bool(validated["movable"]), options=validated,
                                  plugin=info.plugin))
        return tuple(out)

    def plugin_validate(self, validate: Any, table: dict[str, Any], key: str, what: str) -> Mapping[str, Any]:
        if validate is None:
            return table
        try:
            result = validate(table)
        except TableError as exc:
            raise self.table_error(exc, key) from None
        except (ValueError, TypeError, KeyError) as exc:
            msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            raise self.error(f"{key}: {msg}", key) from None
        if not isinstance(result, Mapping):
            raise self.error(f"{key}: the {what}'s validate() returned {type(result).__name__}, not a table "
                             "(a plugin bug)", key)
        return result

    def workloads(self, value: Any, duration: float) -> tuple[WorkloadSpec, ...]:
        items: list[tuple[str, str | None, Any]] = []  # (key, default name, table)
        if isinstance(value, list):
            items = [(f"workloads[{i}]", None, t) for i, t in enumerate(value)]
        elif isinstance(value, Mapping):
            items = [(f"workloads.{n}", n, t) for n, t in value.items()]
        else:
            raise self.error(f"workloads = {show_value(value)}: expected [[workloads]] entries or "
                             "[workloads.NAME] tables", "workloads")
        installed = self.host.workloads() if items else {}
        out: list[WorkloadSpec] = []
        seen: set[str] = set()
        for key, default_name, table in items:
            if not isinstance(table, Mapping):
                raise self.error(f"{key} = {show_value(table)}: expected a table", key)
            wtype = table.get("type", default_name)
            if wtype is None:
                raise self.error(f"{key}.type: missing; expected the workload's type, one of "
                                 f"{', '.join(sorted(installed))}", f"{key}.type")
            if not isinstance(wtype, str) or wtype not in installed:
                close = difflib.get_close_matches(str(wtype), list(installed), n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                tkey = f"{key}.type" if "type" in table else key
                raise self.error(f"{tkey} = {show_value(wtype)}: unknown workload; {hint}installed workloads: "
                                 f"{', '.join(sorted(installed)) or '(none)'}", tkey)
            info = installed[wtype]
            common = self.check({k: table[k] for k in WORKLOAD_COMMON if k in table}, {
                "type": schema.string(),
                "name": schema.string(default_name or wtype),
                "start": schema.duration(0.0),
                "stop": schema.duration(None),
            }, key)
            name = common["name"]
            if name in seen:
                raise self.error(f"{key}.name = {show_value(name)}: another workload has this name; give each "
                                 "a distinct name", f"{key}.name")
            seen.add(name)
            if common["start"] > duration:
                raise self.error(f"{key}.start = {show_value(table.get('start'))}: after the end of the run "
                                 f"(duration {units.format_duration(duration)})", f"{key}.start")
            if common["stop"] is not None and common["stop"] <= common["start"]:
                raise self.error(f"{key}.stop = {show_value(table.get('stop'))}: expected a time after its start",
                                 f"{key}.stop")
            options = {k: v for k, v in table.items() if k not in WORKLOAD_COMMON}
            validated = dict(self.plugin_validate(info.validate, options, key, f"workload {wtype!r}"))
            out.append(WorkloadSpec(name=name, type=wtype, start=common["start"], stop=common["stop"],
                                    options=validated, plugin=info.plugin))
        return tuple(out)

    def timeline(self, value: Any, drivers: tuple[DriverSpec, ...], duration: float) -> tuple[TimelineEntry, ...]:
        if not isinstance(value, list):
            raise self.error(f"timeline = {show_value(value)}: expected [[timeline]] entries", "timeline")
        commands: dict[str, CommandInfo] = self.host.commands() if value else {}
        loaded = {d.name for d in drivers}
        out: list[TimelineEntry] = []
        last_at = 0.0
        for i, t in enumerate(value):
            key = f"timeline[{i}]"
            e = self.check(t, TIMELINE_FIELDS, key)
            line = e["command"]
            try:
                name, args = split_command(line)
            except ValueError as exc:
                raise self.error(f"{key}.command = {show_value(line)}: {exc}", f"{key}.command") from None
            info = commands.get(name)
            if info is None:
                close = difflib.get_close_matches(name, list(commands), n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                raise self.error(f"{key}.command = {show_value(line)}: unknown command {name!r}; {hint}"
                                 f"known commands: {', '.join(sorted(commands))}", f"{key}.command")
            if info.driver and info.driver not in loaded:
                raise self.error(f"{key}.command = {show_value(line)}: the command {name!r} needs the driver "
                                 f"{info.driver!r}, which this scenario does not load (add a "
                                 f"[drivers.{info.driver}] table)", f"{key}.command")
            if info.validate is not None:
                try:
                    info.validate(args)
                except (ValueError, TypeError) as exc:
                    usage = f" (usage: {info.usage})" if info.usage else ""
                    raise self.error(f"{key}.command = {show_value(line)}: {exc}{usage}", f"{key}.command") from None
            if e["at"] is not None:
                if e["at"] > duration:
                    raise self.error(f"{key}.at = {show_value(t.get('at'))}: after the end of the run "
                                     f"(duration {units.format_duration(duration)})", f"{key}.at")
                if e["at"] < last_at:
                    raise self.error(f"{key}.at = {show_value(t.get('at'))}: earlier than the entry before it "
                                     f"({units.format_duration(last_at)}); list timeline entries in time order",
                                     f"{key}.at")
                last_at = e["at"]
            cond = self.condition(e["when"], f"{key}.when") if e["when"] is not None else None
            out.append(TimelineEntry(index=i, line=line, command=name, args=args, at=e["at"], after=e["after"],
                                     when=cond, plugin=info.plugin))
        return tuple(out)

    def condition(self, text: str, key: str) -> Condition:
        expected = (f'expected "METRIC OP SIZE" such as "used > 512MiB" or "free < 10%", with METRIC one of '
                    f"{', '.join(CONDITION_METRICS)} and OP one of {', '.join(CONDITION_OPS)}")
        for op in CONDITION_OPS:
            metric, sep, amount = text.partition(op)
            if sep:
                break
        else:
            raise self.error(f"{key} = {show_value(text)}: {expected}", key)
        metric = metric.strip()
        if metric not in CONDITION_METRICS:
            close = difflib.get_close_matches(metric, CONDITION_METRICS, n=1)
            hint = f'; did you mean "{close[0]}"?' if close else ""
            raise self.error(f"{key} = {show_value(text)}: {expected}{hint}", key)
        amount = amount.strip()
        pages: int | None = None
        fraction: float | None = None
        try:
            if amount.endswith("%"):
                fraction = units.parse_percent(amount)
            else:
                pages = units.parse_pages(amount)
        except units.UnitError as exc:
            raise self.error(f"{key} = {show_value(text)}: {exc}", key) from None
        return Condition(metric=metric, op=op, pages=pages, fraction=fraction, text=text.strip())


def load_scenario(ref: str | None, host: Any, *, overrides: Sequence[str] = (), seed: int | None = None) -> Scenario:
    """Find, read, override and validate a scenario; raises :class:`ScenarioError`."""
    shipped = shipped_scenarios(host)
    if ref is None:
        ref = default_scenario_name(shipped)
    text, label, info = locate(ref, shipped)
    return parse_scenario(text, host, label=label, name=info.name if info else Path(ref).stem,
                          source=ref, overrides=overrides, seed=seed)


def parse_scenario(text: str, host: Any, *, label: str = "<scenario>", name: str = "scenario",
                   source: str = "", overrides: Sequence[str] = (), seed: int | None = None) -> Scenario:
    """Validate scenario text (the file's content) against the installed plugins."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML: {exc}", file=label) from None
    try:
        data = apply_overrides(data, overrides)
    except ScenarioError as exc:
        raise ScenarioError(str(exc), file=label) from None
    if seed is not None:
        data["seed"] = seed
    loader = _Loader(label, overrides, host)
    return loader.load(data, name=name, source=source or label, overrides=overrides)


__all__ = [
    "Condition",
    "DriverSpec",
    "MachineSpec",
    "Scenario",
    "ScenarioError",
    "ScenarioInfo",
    "TimelineEntry",
    "WorkloadSpec",
    "apply_overrides",
    "default_scenario_name",
    "load_scenario",
    "package_scenarios",
    "parse_scenario",
    "shipped_scenarios",
]
