"""Pure parsers for the /proc text formats and /proc/kpageflags.

Every function takes the file's text (or bytes) and a name to blame, and returns plain
frozen data.  Nothing here opens files: the loader (:mod:`pagemig.snapshot.model`) does,
so each parser can be tested on literal text copied from a real machine.  A malformed
file raises :class:`SnapshotFormatError` naming the file, the line and what was expected,
because a snapshot copied by hand from some other machine is the normal case, and a
traceback from deep inside numpy tells its owner nothing.

Formats follow Linux 6.1 (mm/vmstat.c, fs/proc/page.c); older and newer kernels print
the same columns, with more or fewer orders and migratetypes, which the parsers take as
they come.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

import attrs
import numpy as np

#: pagetypeinfo prints a free count of 100000 or more as ">100000" (since v5.6, to keep
#: the read from holding the zone lock for long); we keep the floor and say so.
PAGETYPEINFO_CAP = 100000


class SnapshotFormatError(ValueError):
    """A snapshot file is missing or not what its /proc name promises."""

    def __init__(self, file: str, expected: str, line: int | None = None, got: str | None = None):
        self.file = file
        self.expected = expected
        self.line = line
        self.got = got
        where = f"{file}" if line is None else f"{file}, line {line}"
        msg = f"{where}: expected {expected}"
        if got is not None:
            msg += f", got {got!r}"
        super().__init__(msg)


class KPF(enum.IntEnum):
    """Bit numbers of /proc/kpageflags (include/uapi/linux/kernel-page-flags.h)."""

    LOCKED = 0
    ERROR = 1
    REFERENCED = 2
    UPTODATE = 3
    DIRTY = 4
    LRU = 5
    ACTIVE = 6
    SLAB = 7
    WRITEBACK = 8
    RECLAIM = 9
    BUDDY = 10
    MMAP = 11
    ANON = 12
    SWAPCACHE = 13
    SWAPBACKED = 14
    COMPOUND_HEAD = 15
    COMPOUND_TAIL = 16
    HUGE = 17
    UNEVICTABLE = 18
    HWPOISON = 19
    NOPAGE = 20
    KSM = 21
    THP = 22
    OFFLINE = 23  # BALLOON before v5.0
    ZERO_PAGE = 24
    IDLE = 25
    PGTABLE = 26
    # kernel-internal bits, exported as "hacker" bits (fs/proc/page.c)
    RESERVED = 32
    MLOCKED = 33
    MAPPEDTODISK = 34
    PRIVATE = 35
    PRIVATE_2 = 36
    OWNER_PRIVATE = 37
    ARCH = 38
    UNCACHED = 39
    SOFTDIRTY = 40
    ARCH_2 = 41


def kpf_mask(*bits: KPF) -> np.uint64:
    """The u64 mask of the given bits, for ``flags & mask`` tests on the whole array."""
    m = 0
    for b in bits:
        m |= 1 << int(b)
    return np.uint64(m)


def kpf_test(flags: np.ndarray, bit: KPF) -> np.ndarray:
    """Boolean array: which pfns have ``bit`` set."""
    return (flags & kpf_mask(bit)) != 0


def kpf_names(value: int) -> list[str]:
    """Names of the bits set in one kpageflags word (unknown bits as ``bit<N>``)."""
    names = []
    for i in range(64):
        if value >> i & 1:
            try:
                names.append(KPF(i).name)
            except ValueError:
                names.append(f"bit{i}")
    return names


def decode_u64_array(data: bytes, file: str) -> np.ndarray:
    """/proc/kpageflags or /proc/kpagecount: one little-endian u64 per pfn from pfn 0.

    Returned as a native-endian, writable uint64 array so that later vectorised work
    does not pay for byte swapping on every operation.
    """
    if len(data) % 8:
        raise SnapshotFormatError(
            file, "a whole number of 8-byte little-endian words, one per pfn",
            got=f"{len(data)} bytes",
        )
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


# --- /proc/buddyinfo ---------------------------------------------------------------

_BUDDY_RE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+)\s+((?:\d+\s*)+)$")


@attrs.frozen
class BuddyZone:
    """One line of /proc/buddyinfo: free block counts per order of one zone."""

    node: int
    zone: str
    counts: tuple[int, ...]

    @property
    def free_pages(self) -> int:
        return sum(n << o for o, n in enumerate(self.counts))

    @property
    def free_blocks(self) -> int:
        return sum(self.counts)


def parse_buddyinfo(text: str, file: str = "buddyinfo") -> tuple[BuddyZone, ...]:
    zones = []
    norders: int | None = None
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _BUDDY_RE.match(line.strip())
        if not m:
            raise SnapshotFormatError(
                file, "'Node N, zone NAME' followed by one free count per order", i, line
            )
        counts = tuple(int(x) for x in m.group(3).split())
        if norders is not None and len(counts) != norders:
            raise SnapshotFormatError(file, f"{norders} orders on every line", i, line)
        norders = len(counts)
        zones.append(BuddyZone(int(m.group(1)), m.group(2), counts))
    if not zones:
        raise SnapshotFormatError(file, "at least one 'Node N, zone NAME ...' line", got=text[:80])
    return tuple(zones)


# --- /proc/pagetypeinfo -----------------------------------------------------------


@attrs.frozen
class PageTypeInfo:
    """/proc/pagetypeinfo: free counts per zone x migratetype x order, and block counts.

    ``free[(node, zone, type)]`` is a tuple of counts per order; a count the kernel printed
    as ``>100000`` is stored as 100000 and its key listed in ``capped`` (a floor, not a
    value).  ``blocks[(node, zone)][type]`` is the number of pageblocks of that type.
    It does not say which pageblock has which type: :mod:`pagemig.snapshot.importer`
    infers that.
    """

    pageblock_order: int
    pages_per_block: int
    types: tuple[str, ...]
    free: Mapping[tuple[int, str, str], tuple[int, ...]]
    blocks: Mapping[tuple[int, str], Mapping[str, int]]
    capped: frozenset[tuple[int, str, str, int]] = frozenset()

    def zone_free(self, node: int, zone: str) -> dict[str, tuple[int, ...]]:
        return {t: c for (n, z, t), c in self.free.items() if n == node and z == zone}


_PTI_FREE_RE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+),\s*type\s+(\S+)\s+(.*)$")
_PTI_BLOCK_RE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+)\s+((?:\d+\s*)+)$")


def parse_pagetypeinfo(text: str, file: str = "pagetypeinfo") -> PageTypeInfo:
    order = per_block = None
    free: dict[tuple[int, str, str], tuple[int, ...]] = {}
    blocks: dict[tuple[int, str], dict[str, int]] = {}
    capped: set[tuple[int, str, str, int]] = set()
    block_types: tuple[str, ...] | None = None
    section = None
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("Page block order:"):
            order = _int_after(line, file, i)
            continue
        if line.startswith("Pages per block:"):
            per_block = _int_after(line, file, i)
            continue
        if line.startswith("Free pages count per migrate type"):
            section = "free"
            continue
        if line.startswith("Number of blocks type"):
            section = "blocks"
            block_types = tuple(line[len("Number of blocks type"):].split())
            continue
        if line.startswith("Number of mixed blocks"):  # CONFIG_PAGE_OWNER: not used
            section = "mixed"
            continue
        if section == "free":
            m = _PTI_FREE_RE.match(line)
            if not m:
                raise SnapshotFormatError(file, "'Node N, zone Z, type T' and counts", i, raw)
            counts = []
            for o, tok in enumerate(m.group(4).split()):
                if tok.startswith(">"):
                    capped.add((int(m.group(1)), m.group(2), m.group(3), o))
                    tok = tok[1:]
                if not tok.isdigit():
                    raise SnapshotFormatError(file, "a count or '>100000'", i, tok)
                counts.append(int(tok))
            free[(int(m.group(1)), m.group(2), m.group(3))] = tuple(counts)
        elif section == "blocks":
            m = _PTI_BLOCK_RE.match(line)
            if not m or block_types is None:
                raise SnapshotFormatError(file, "'Node N, zone Z' and block counts", i, raw)
            nums = [int(x) for x in m.group(3).split()]
            if len(nums) != len(block_types):
                raise SnapshotFormatError(
                    file, f"{len(block_types)} block counts ({' '.join(block_types)})", i, raw
                )
            blocks[(int(m.group(1)), m.group(2))] = dict(zip(block_types, nums, strict=True))
        elif section == "mixed":
            continue
        else:
            raise SnapshotFormatError(file, "'Page block order:' header first", i, raw)
    if order is None or per_block is None:
        raise SnapshotFormatError(file, "'Page block order:' and 'Pages per block:' lines")
    if per_block != 1 << order:
        raise SnapshotFormatError(file, f"Pages per block = 2^{order}", got=str(per_block))
    if not blocks:
        raise SnapshotFormatError(file, "a 'Number of blocks type' section")
    assert block_types is not None
    return PageTypeInfo(order, per_block, block_types, free, blocks, frozenset(capped))


def _int_after(line: str, file: str, lineno: int) -> int:
    tok = line.rsplit(":", 1)[1].strip()
    if not tok.isdigit():
        raise SnapshotFormatError(file, "a number after ':'", lineno, line)
    return int(tok)


# --- /proc/zoneinfo ---------------------------------------------------------------


@attrs.frozen
class ZoneInfo:
    """One zone of /proc/zoneinfo.

    ``start_pfn`` is None for an unpopulated zone (the kernel prints no more than its
    watermarks).  ``pcp_count`` sums the zone's per-cpu free lists ("pagesets count"):
    those pages are free but in no buddy list, so kpageflags shows them with no flags
    and buddyinfo does not count them.
    """

    node: int
    name: str
    start_pfn: int | None
    spanned: int
    present: int
    managed: int
    free: int
    min: int
    low: int
    high: int
    counters: Mapping[str, int]
    pcp_count: int = 0

    @property
    def populated(self) -> bool:
        return self.present > 0 and self.start_pfn is not None

    @property
    def end_pfn(self) -> int:
        return (self.start_pfn or 0) + self.spanned


_ZONE_HDR_RE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+)\s*$")


def parse_zoneinfo(text: str, file: str = "zoneinfo") -> tuple[ZoneInfo, ...]:
    zones: list[ZoneInfo] = []
    cur: dict[str, int] | None = None
    hdr: tuple[int, str] | None = None
    counters: dict[str, int] = {}
    pcp = 0
    mode = "zone"

    def finish() -> None:
        if hdr is None or cur is None:
            return
        for key in ("spanned", "present", "managed", "min", "low", "high"):
            if key not in cur:
                raise SnapshotFormatError(file, f"a '{key}' line in zone {hdr[1]}")
        zones.append(ZoneInfo(
            node=hdr[0], name=hdr[1], start_pfn=cur.get("start_pfn"),
            spanned=cur["spanned"], present=cur["present"], managed=cur["managed"],
            free=cur.get("pages free", 0), min=cur["min"], low=cur["low"], high=cur["high"],
            counters=dict(counters), pcp_count=pcp,
        ))

    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        m = _ZONE_HDR_RE.match(line)
        if m:
            finish()
            hdr = (int(m.group(1)), m.group(2))
            cur, counters, pcp, mode = {}, {}, 0, "zone"
            continue
        if cur is None:
            raise SnapshotFormatError(file, "'Node N, zone NAME' first", i, raw)
        if line == "per-node stats":
            mode = "node"
            continue
        if line == "pagesets":
            mode = "pagesets"
            continue
        if line.startswith("pages free"):
            mode = "zone"
            cur["pages free"] = _last_int(line, file, i)
            continue
        if line.startswith("protection:"):
            continue
        key, _, val = line.partition(":") if ":" in line else line.partition(" ")
        key, val = key.strip(), val.strip()
        if mode == "pagesets":
            if key == "count":
                pcp += _last_int(line, file, i)
                continue
            if key in ("cpu", "high", "batch", "vm stats threshold", "high_min", "high_max"):
                continue
            # node_unreclaimable and start_pfn close the pagesets list
            mode = "zone"
        if mode == "node":
            continue
        if not val.lstrip("-").isdigit():
            continue  # lines this importer has no use for
        if key in ("start_pfn", "spanned", "present", "managed", "min", "low", "high"):
            cur[key] = int(val)
        else:
            counters[key] = int(val)
    finish()
    if not zones:
        raise SnapshotFormatError(file, "at least one 'Node N, zone NAME' section", got=text[:80])
    return tuple(zones)


def _last_int(line: str, file: str, lineno: int) -> int:
    tok = line.split()[-1]
    if not tok.lstrip("-").isdigit():
        raise SnapshotFormatError(file, "a number at the end of the line", lineno, line)
    return int(tok)


# --- /proc/vmstat -----------------------------------------------------------------


def parse_vmstat(text: str, file: str = "vmstat") -> dict[str, int]:
    out: dict[str, int] = {}
    for i, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        parts = raw.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise SnapshotFormatError(file, "'name value' on every line", i, raw)
        out[parts[0]] = int(parts[1])
    if not out:
        raise SnapshotFormatError(file, "'name value' lines", got=text[:80])
    return out


def parse_version(text: str) -> str:
    """The release from /proc/version ("Linux version 6.1.176 (...)"), or the text."""
    parts = text.split()
    if len(parts) >= 3 and parts[0] == "Linux" and parts[1] == "version":
        return parts[2]
    return text.strip()
