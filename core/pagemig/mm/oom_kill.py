"""The OOM notifier chain of mm/oom_kill.c (v6.1): ``register_oom_notifier``, ``out_of_memory``.

When reclaim and compaction have failed an allocation that may not fail cheaply,
``__alloc_pages_may_oom`` (:mod:`pagemig.mm.slowpath`) calls ``out_of_memory()``.
Before it chooses a task to kill, ``out_of_memory`` calls the ``oom_notify_list``
(``blocking_notifier_call_chain``): subsystems that hold memory they can give back
at once, virtio_balloon's deflate-on-oom first among them, free it there, and when
any did the allocation retries instead of a task dying.

Simplified, and why: there is no OOM killer, so ``out_of_memory`` is the notifier
chain alone; when the notifiers freed nothing it reports no progress and the
allocation fails (the kernel would kill a task and retry; a simulator that cannot
kill would retry for ever).  Notifiers have no priorities (every in-tree OOM
notifier registers at priority 0, and the chain keeps equal priorities in
registration order), and the chain is per machine, as the simulator has one node.
The machine keeps the chain, so this module sits below it and types it by what it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import attrs

OomNotifier = Callable[[], int]
"""An OOM notifier: called when memory ran out, returns the number of pages it freed
(the ``unsigned long *freed`` a kernel notifier adds to)."""


@attrs.define(eq=False)
class OomNotifierChain:
    """``oom_notify_list``: the notifiers in the order they were registered, and what they did."""

    notifiers: list[OomNotifier] = attrs.field(factory=list)
    calls: int = 0  # out_of_memory() calls that found a notifier
    freed: int = 0  # pages the notifiers gave back, over all calls


class OomHost(Protocol):
    """What the OOM calls need of a machine: its notifier chain."""

    @property
    def oom_notify_list(self) -> OomNotifierChain: ...


def register_oom_notifier(machine: OomHost, notify: OomNotifier) -> None:
    """``register_oom_notifier()``: call ``notify()`` whenever an allocation is about to
    fail for want of memory; it returns the pages it freed.  Registering the same
    callable twice is an error (the kernel's chain would loop)."""
    chain = machine.oom_notify_list
    if notify in chain.notifiers:
        raise ValueError(f"register_oom_notifier: {notify!r} is registered already")
    chain.notifiers.append(notify)


def unregister_oom_notifier(machine: OomHost, notify: OomNotifier) -> bool:
    """``unregister_oom_notifier()``: False (the kernel's -ENOENT) when it was not registered."""
    chain = machine.oom_notify_list
    if notify not in chain.notifiers:
        return False
    chain.notifiers.remove(notify)
    return True


def out_of_memory(machine: OomHost) -> bool:
    """``out_of_memory()`` without the killer: run the notifier chain; True (progress, retry the
    allocation) when the notifiers freed pages.  A notifier that returns a negative count
    is a bug and raises."""
    chain = machine.oom_notify_list
    if not chain.notifiers:
        return False
    chain.calls += 1
    freed = 0
    for notify in list(chain.notifiers):
        got = int(notify())
        if got < 0:
            raise ValueError(f"OOM notifier {notify!r} returned {got} pages freed")
        freed += got
    chain.freed += freed
    return freed > 0


__all__ = [
    "OomHost",
    "OomNotifier",
    "OomNotifierChain",
    "out_of_memory",
    "register_oom_notifier",
    "unregister_oom_notifier",
]
