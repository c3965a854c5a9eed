"""Plugin discovery that survives a broken plugin, and the registries built from the hooks.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that fails to
import (llm#1280: "installed a plugin and now nothing works"), so each entry point is
loaded in its own try; the failure is recorded with its distribution's name and the
rest still load.  ``PAGEMIG_STRICT_PLUGINS=1`` re-raises instead.

Switches, as pytest and datasette users know them:

* ``PAGEMIG_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry points (built-ins still load);
* ``PAGEMIG_PLUGINS=a,b``: load only these entry points (empty: none);
* blocking one plugin: ``pagemig --no-plugin NAME`` or ``PAGEMIG_BLOCK_PLUGINS=a,b``;
* ``PAGEMIG_TRACE_PLUGINS=1``: every hook call, its arguments and results on stderr.

A plugin declares the :mod:`pagemig.api` it was written for with a module attribute of
its entry point, ``PAGEMIG_API_VERSION = "1.0"``.  One written for another major
version, or for a newer minor than this core's, is refused at discovery with one log
line naming the plugin, the version it wants and the one found (a plugin built for
another core would otherwise fail however it happened to); the others still load.  A
plugin that declares nothing is loaded, and ``pagemig plugins`` shows its API as unknown.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

import attrs
import pluggy
import structlog

from pagemig import API_VERSION, hookspecs

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "pagemig"

# Modules of the core that register themselves through the hooks like any plugin.
BUILTIN_PLUGINS: list[str] = [
    "pagemig.sim.builtin",
    "pagemig.workloads.builtin",
    "pagemig.compaction_policy",
]


@attrs.define
class PluginRecord:
    """One plugin as ``pagemig plugins`` lists it."""

    name: str
    distribution: str = ""
    version: str = ""
    module: str = ""
    builtin: bool = False
    hooks: list[str] = attrs.field(factory=list)
    drivers: list[str] = attrs.field(factory=list)
    workloads: list[str] = attrs.field(factory=list)
    commands: list[str] = attrs.field(factory=list)
    scenarios: list[str] = attrs.field(factory=list)
    api_version: str = ""  # the pagemig.api version the plugin declares it was written for
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


T = TypeVar("T")

API_VERSION_ATTRIBUTE = "PAGEMIG_API_VERSION"


def _major_minor(version: str) -> tuple[int, int] | None:
    parts = version.split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def api_incompatibility(wanted: object, found: str = API_VERSION) -> str | None:
    """Why a plugin that declares ``wanted`` may not load on a core whose API is ``found``
    (None: it may).  Semantic versioning: the majors must be equal, and the plugin's minor
    must not be above the core's (it may use names added up to its minor)."""
    if wanted is None:
        return None
    w = _major_minor(wanted) if isinstance(wanted, str) else None
    if w is None:
        return f"{API_VERSION_ATTRIBUTE} = {wanted!r} is not a version MAJOR.MINOR such as {found!r}"
    f = _major_minor(found)
    assert f is not None, found
    if w[0] != f[0] or w[1] > f[1]:
        return f"written for pagemig.api {wanted}, this core has {found}"
    return None


class PluginHost:
    """The plugin manager plus what was learnt while loading it."""

    def __init__(self, pm: pluggy.PluginManager, records: dict[str, PluginRecord]) -> None:
        self.pm = pm
        self.records = records
        self._registries: dict[str, dict[str, Any]] = {}

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def _collect(self, hook_name: str, kind: str) -> dict[str, Any]:
        """Call one registration hook plugin by plugin, so each item knows who registered it
        and one plugin's failing hook costs only that plugin's items."""
        if hook_name in self._registries:
            return self._registries[hook_name]
        items: dict[str, Any] = {}
        hook = getattr(self.pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):  # registration order
            plugin_name = self.pm.get_name(impl.plugin) or "?"
            record = self.records.get(plugin_name)

            def register(item: Any, _plugin: str = plugin_name, _record: PluginRecord | None = record) -> None:
                name = item.name
                if name in items:
                    raise ValueError(f"{kind} {name!r} registered twice "
                                     f"(by {items[name].plugin!r} and {_plugin!r})")
                if hasattr(item, "plugin") and not item.plugin:
                    item = attrs.evolve(item, plugin=_plugin)
                items[name] = item
                if _record is not None:
                    getattr(_record, kind + "s").append(name)

            try:
                impl.function(register=register)
            except Exception as exc:
                if os.environ.get("PAGEMIG_STRICT_PLUGINS") == "1":
                    raise
                msg = f"{hook_name} failed: {type(exc).__name__}: {exc}"
                log.warning("plugin_hook_failed", plugin=plugin_name, hook=hook_name, error=str(exc))
                if record is not None:
                    record.error = msg
        self._registries[hook_name] = items
        return items

    def drivers(self) -> dict[str, Any]:
        return self._collect("pagemig_register_drivers", "driver")

    def workloads(self) -> dict[str, Any]:
        return self._collect("pagemig_register_workloads", "workload")

    def commands(self) -> dict[str, Any]:
        return self._collect("pagemig_register_commands", "command")

    def scenarios(self) -> dict[str, Any]:
        return self._collect("pagemig_register_scenarios", "scenario")

    def listing(self) -> list[PluginRecord]:
        """Every plugin with its registrations (calling the registration hooks if not yet)."""
        self.drivers()
        self.workloads()
        self.commands()
        self.scenarios()
        return list(self.records.values())


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [p.strip() for p in raw.split(",") if p.strip()]


def _entry_points() -> Iterable[EntryPoint]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(h.name for h in (pm.get_hookcallers(plugin) or []))


def get_plugin_host(*, blocked: Iterable[str] = (), extra_plugins: Iterable[tuple[str, object]] = (),
                    autoload: bool | None = None) -> PluginHost:
    """Build the plugin manager: specs, built-ins, then entry points each in its own try."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    strict = os.environ.get("PAGEMIG_STRICT_PLUGINS") == "1"
    blocked_set = set(blocked) | set(_env_list("PAGEMIG_BLOCK_PLUGINS") or [])
    records: dict[str, PluginRecord] = {}

    for modname in BUILTIN_PLUGINS:
        mod = importlib.import_module(modname)
        pm.register(mod, name=modname)
        records[modname] = PluginRecord(name=modname, module=modname, builtin=True, api_version=API_VERSION,
                                        distribution="pagemig", hooks=_hook_names(pm, mod))
        from pagemig import __version__

        records[modname].version = __version__

    if autoload is None:
        autoload = os.environ.get("PAGEMIG_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true", "yes")
    only = _env_list("PAGEMIG_PLUGINS")
    if autoload:
        for ep in _entry_points():
            if only is not None and ep.name not in only:
                continue
            dist = ep.dist
            record = PluginRecord(name=ep.name, distribution=dist.name if dist else "",
                                  version=dist.version if dist else "", module=ep.value)
            records[ep.name] = record
            if ep.name in blocked_set:
                pm.set_blocked(ep.name)
                record.error = "blocked"
                continue
            try:
                plugin = ep.load()
                wanted = getattr(plugin, API_VERSION_ATTRIBUTE, None)
                record.api_version = "" if wanted is None else str(wanted)
                refused = api_incompatibility(wanted)
                if refused is not None:
                    if strict:
                        raise RuntimeError(f"plugin {ep.name!r} refused: {refused}")
                    record.error = f"refused: {refused}"
                    log.warning("plugin_refused", plugin=ep.name, wanted=record.api_version, found=API_VERSION)
                    continue
                pm.register(plugin, name=ep.name)
            except Exception as exc:
                if strict:
                    raise
                record.error = f"failed to load: {type(exc).__name__}: {exc}"
                log.warning("plugin_load_failed", plugin=ep.name, distribution=record.distribution,
                            error=f"{type(exc).__name__}: {exc}")
                continue
            record.hooks = _hook_names(pm, plugin)
    if os.environ.get("PAGEMIG_TRACE_PLUGINS") == "1":
        # every hook call and its results on stderr, as DATASETTE_TRACE_PLUGINS does
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    for name, plugin in extra_plugins:
        pm.register(plugin, name=name)
        records[name] = PluginRecord(name=name, module=getattr(plugin, "__name__", name),
                                     hooks=_hook_names(pm, plugin))
    return PluginHost(pm, records)


def registration_callback(target: dict[str, T]) -> Callable[[T], None]:
    """A plain ``register`` for tests and embedders that call a hook implementation directly."""

    def register(item: T) -> None:
        target[item.name] = item  # type: ignore[attr-defined]

    return register
