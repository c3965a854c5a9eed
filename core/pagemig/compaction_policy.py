"""The kernel's compaction policy as the default ``pagemig_compaction_*`` hook implementations.

The core registers this module like any plugin (``pagemig.plugins.BUILTIN_PLUGINS``),
so a plugin replaces one phase by answering the same firstresult hook (its answer
wins, being registered later), and an observer sees the same calls the defaults do.
The implementations are ``trylast`` so that they answer only when nobody else did.
It lives beside the hook specifications, not in :mod:`pagemig.mm`, because it binds the
two: the simulated kernel knows nothing of plugins.
"""

from __future__ import annotations

from typing import Any

from pagemig.hookspecs import hookimpl
from pagemig.mm import compaction


@hookimpl(trylast=True)
def pagemig_compaction_finished(machine: Any, cc: Any) -> compaction.CompactResult:
    return compaction.compact_finished(machine, cc)


@hookimpl(trylast=True)
def pagemig_compaction_isolate_migratepages(machine: Any, cc: Any) -> compaction.IsolateMigrate:
    return compaction.isolate_migratepages(machine, cc)


@hookimpl(trylast=True)
def pagemig_compaction_isolate_freepages(machine: Any, cc: Any) -> int:
    return compaction.isolate_freepages(machine, cc)
