"""The core's own timeline commands and shipped scenarios, registered as a plugin would
register them: the core uses its own extension points, so they are known to work."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pagemig.hookspecs import hookimpl
from pagemig.sim.commands import CommandInfo, CommandRun


# ------------------------------------------------------------------ the core's commands
def _no_args(args: Sequence[str]) -> None:
    if args:
        raise ValueError("this command takes no arguments")


def compact_handler(run: CommandRun, args: Sequence[str]) -> dict[str, Any]:
    """``echo 1 > /proc/sys/vm/compact_memory``: full compaction of every zone."""
    from pagemig.mm.compaction import compact_memory

    with run.compaction("compact_memory") as record:
        compact_memory(run.machine)
    return {"compaction": record.index}


DROP_CACHES_EXPECTED = "1 (page cache), 2 (reclaimable slab) or 3 (both), as /proc/sys/vm/drop_caches takes"


def _drop_caches_validate(args: Sequence[str]) -> None:
    if len(args) > 1 or (args and args[0] not in ("1", "2", "3")):
        raise ValueError(f"expected no argument or {DROP_CACHES_EXPECTED}")


def drop_caches_handler(run: CommandRun, args: Sequence[str]) -> dict[str, Any]:
    """``echo N > /proc/sys/vm/drop_caches``: free clean page cache (1), reclaimable slab (2), or both.

    Page cache goes through every reclaimable owner's ``shrink`` with writeback and
    swap off, so dirty pages stay, as in the kernel (run ``sync`` first there);
    slab through every registered shrinker.
    """
    from pagemig.mm.lru import ShrinkControl, reclaimable_owners
    from pagemig.mm.pages import PageKind

    m = run.machine
    level = int(args[0]) if args else 3
    before = m.nr_free_pages
    dropped = 0
    if level & 1:
        sc = ShrinkControl(may_writepage=False, swap=None, max_pfn=m.nr_pages)
        for owner in reclaimable_owners(m):
            n = int(owner.lru_sizes().get(PageKind.FILE, 0))
            if n:
                dropped += owner.shrink(PageKind.FILE, n, sc).reclaimed
        m.vmstat["drop_pagecache"] += 1
    if level & 2:
        for shrinker in list(m.shrinkers):
            dropped += int(shrinker.scan_objects(int(shrinker.count_objects())))
        m.vmstat["drop_slab"] += 1
    return {"level": level, "pages_dropped": dropped, "free_pages_gained": m.nr_free_pages - before}


def sample_handler(run: CommandRun, args: Sequence[str]) -> dict[str, Any]:
    """Take a sample now, besides the regular ones (a label is optional)."""
    run.sample(reason=" ".join(args) or "command")
    return {}


def _sysctl_names() -> list[str]:
    from pagemig.mm.sysctl import SYSCTL_NAMES

    return list(SYSCTL_NAMES)


def _set_validate(args: Sequence[str]) -> None:
    import difflib

    if len(args) != 2:
        raise ValueError("expected KEY VALUE, e.g. `set compaction_proactiveness 0`")
    key = args[0].removeprefix("vm.")
    names = _sysctl_names()
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        raise ValueError(f"unknown tunable {args[0]!r}; {hint}(known: {', '.join(names)})")
    try:
        value = int(args[1])
    except ValueError:
        raise ValueError(f"expected an integer value for {key}, got {args[1]!r}") from None
    from pagemig.mm.sysctl import tunable

    t = tunable(key)
    lo, hi = t.minimum, t.maximum
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{key} must be from {lo} to {hi}" if hi is not None else f"{key} must be >= {lo}")


def set_handler(run: CommandRun, args: Sequence[str]) -> dict[str, Any]:
    """``sysctl vm.KEY=VALUE``: watermarks follow their tunables at once."""
    key = args[0].removeprefix("vm.")
    old = getattr(run.machine.sysctl, key)
    run.machine.set_sysctl(key, int(args[1]))
    return {"key": key, "old": old, "new": int(args[1])}


def builtin_commands() -> list[CommandInfo]:
    return [
        CommandInfo("compact", compact_handler, "full compaction of every zone, as `echo 1 > "
                    "/proc/sys/vm/compact_memory`", validate=_no_args, usage="compact"),
        CommandInfo("drop_caches", drop_caches_handler, "free clean page cache and/or reclaimable slab, as "
                    "`echo 3 > /proc/sys/vm/drop_caches`", validate=_drop_caches_validate,
                    usage="drop_caches [1|2|3]"),
        CommandInfo("sample", sample_handler, "record a sample of buddyinfo, pagetypeinfo and vmstat now",
                    usage="sample [LABEL]"),
        CommandInfo("set", set_handler, "set a /proc/sys/vm tunable, e.g. `set compaction_proactiveness 0`",
                    validate=_set_validate, usage="set KEY VALUE"),
    ]


# ------------------------------------------------------------------ registration


@hookimpl
def pagemig_register_commands(register: Callable[[Any], None]) -> None:
    for info in builtin_commands():
        register(info)


@hookimpl
def pagemig_register_scenarios(register: Callable[[Any], None]) -> None:
    from pagemig.sim.scenario import package_scenarios

    for info in package_scenarios("pagemig"):
        register(info)
