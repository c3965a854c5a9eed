"""Swap devices: the part of mm/swapfile.c (v6.1) the simulator needs.

``swapon`` registers a device (:func:`register_swap_device`); the machine's
:class:`SwapSpace` uses all of them, highest priority first, as one device, hands out
composite handles (device index in the low bits, as a ``swp_entry_t`` keeps the
swap type beside the offset) and counts ``pswpout``/``pswpin``.  zram registers one
device; a test can register a fake.

Simplified, and why: no swap cache, no cluster allocator, no readahead, no discard,
no ``swap_info_struct`` flags: a device is the four calls of :class:`SwapDevice`,
and a slot is freed when its page comes back (:meth:`SwapSpace.swap_free`).  The
machine owns the swap space (the kernel's ``swap_info[]`` is global; the machine is
the simulator's whole world), so this module sits below the machine and types it by
what it uses.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol, runtime_checkable

import numpy as np
import structlog

log = structlog.get_logger(__name__)

MAX_SWAPFILES_SHIFT = 5  # at most 32 swap devices (include/linux/swap.h)
MAX_SWAPFILES = 1 << MAX_SWAPFILES_SHIFT


@runtime_checkable
class SwapDevice(Protocol):
    """A swap device (``swapon``).  zram registers one; a test can register a fake.

    ``swap_out(token)`` stores a page's content and returns a handle (an int >= 0),
    or None when the device is full.  ``swap_in(handle)`` returns the content;
    ``swap_free(handle)`` releases the slot.  ``capacity`` is the device size in
    pages (``disksize``; a compressing device may be full earlier).  Optional:
    ``priority`` (higher is used first, as ``swapon -p``; default -2) and
    ``swap_out_many(tokens) -> handles`` (an int64 array, -1 where the device was
    full) for speed.
    """

    name: str

    @property
    def capacity(self) -> int: ...

    def swap_out(self, token: int) -> int | None: ...

    def swap_in(self, handle: int) -> int: ...

    def swap_free(self, handle: int) -> None: ...


class SwapSpace:
    """All swap devices of a machine, used highest priority first, as one device.

    It hands out composite handles (device index in the low bits), keeps the
    slot count per device (``nr_swap_pages`` is capacity minus slots in use) and
    counts ``pswpout``/``pswpin``, so every swap-out is counted however it happens.
    """

    def __init__(self, vmstat: Counter[str]) -> None:
        self.vmstat = vmstat  # the machine's event counters
        self.devices: list[SwapDevice] = []
        self.used: list[int] = []
        self._order: list[int] = []

    def register(self, dev: SwapDevice) -> None:
        if not isinstance(dev, SwapDevice):
            raise TypeError(f"{dev!r} is not a SwapDevice: it needs name, capacity, swap_out(token), "
                            "swap_in(handle) and swap_free(handle)")
        if len(self.devices) >= MAX_SWAPFILES:
            raise ValueError(f"at most {MAX_SWAPFILES} swap devices (MAX_SWAPFILES)")
        if any(d is dev for d in self.devices):
            raise ValueError(f"swap device {dev.name!r} is already registered")
        self.devices.append(dev)
        self.used.append(0)
        # stable sort: equal priorities keep registration order
        self._order = sorted(range(len(self.devices)), key=lambda i: -int(getattr(self.devices[i], "priority", -2)))

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def nr_free(self) -> int:
        """``get_nr_swap_pages()``: free slots over all devices."""
        return sum(max(0, int(d.capacity) - u) for d, u in zip(self.devices, self.used, strict=True))

    @property
    def nr_used(self) -> int:
        return sum(self.used)

    def _split(self, handle: int) -> tuple[int, int]:
        idx = handle & (MAX_SWAPFILES - 1)
        if handle < 0 or idx >= len(self.devices):
            raise ValueError(f"swap handle {handle!r} names no registered swap device")
        return idx, handle >> MAX_SWAPFILES_SHIFT

    def swap_out(self, token: int) -> int | None:
        out = self.swap_out_many(np.asarray([token], dtype=np.uint64))
        return None if out[0] < 0 else int(out[0])

    def swap_out_many(self, tokens: np.ndarray) -> np.ndarray:
        """Swap out a batch: a composite handle per token, -1 for those no device would take.

        Devices are tried highest priority first; a device is done with as soon as it
        reports full.
        """
        tokens = np.asarray(tokens, dtype=np.uint64)
        out = np.full(len(tokens), -1, dtype=np.int64)
        todo = np.arange(len(tokens))
        for idx in self._order:
            if not len(todo):
                break
            dev = self.devices[idx]
            room = int(dev.capacity) - self.used[idx]
            if room <= 0:
                continue
            take = todo[:room]
            many = getattr(dev, "swap_out_many", None)
            if many is not None:
                got = np.asarray(many(tokens[take]), dtype=np.int64)
                if got.shape != take.shape:
                    raise ValueError(f"swap device {dev.name!r}: swap_out_many returned {got.shape[0]} handles "
                                     f"for {len(take)} pages")
            else:
                got = np.full(len(take), -1, dtype=np.int64)
                for j, tok in enumerate(tokens[take].tolist()):
                    h = dev.swap_out(int(tok))
                    if h is None:
                        break
                    got[j] = h
            ok = got >= 0
            if np.any(got[ok] >= 1 << (63 - MAX_SWAPFILES_SHIFT)):
                raise ValueError(f"swap device {dev.name!r} returned a handle that does not fit 58 bits")
            out[take[ok]] = (got[ok] << MAX_SWAPFILES_SHIFT) | idx
            n = int(np.count_nonzero(ok))
            self.used[idx] += n
            todo = np.concatenate((take[~ok], todo[room:]))
        done = int(np.count_nonzero(out >= 0))
        if done:
            self.vmstat["pswpout"] += done
        return out

    def swap_in(self, handle: int) -> int:
        """Read a page back (``swap_readpage``); the slot stays in use until :meth:`swap_free`."""
        idx, h = self._split(handle)
        self.vmstat["pswpin"] += 1
        return int(self.devices[idx].swap_in(h))

    def swap_free(self, handle: int) -> None:
        idx, h = self._split(handle)
        self.devices[idx].swap_free(h)
        self.used[idx] -= 1



class SwapHost(Protocol):
    """What swapon needs of a machine: its swap space."""

    @property
    def swap(self) -> SwapSpace: ...


def register_swap_device(machine: SwapHost, dev: SwapDevice) -> None:
    """``swapon``: from now on anon pages are reclaimable into ``dev``."""
    machine.swap.register(dev)
    log.debug("swapon", device=dev.name, capacity=int(dev.capacity))


def swap_devices(machine: SwapHost) -> list[SwapDevice]:
    return machine.swap.devices


__all__ = ["MAX_SWAPFILES", "SwapDevice", "SwapHost", "SwapSpace", "register_swap_device", "swap_devices"]
