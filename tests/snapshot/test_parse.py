"""The /proc parsers on literal text (copied from the captured guest, or hand-made) and
kpageflags decoding on hand-built words."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from pagemig.snapshot.parse import (
    KPF,
    SnapshotFormatError,
    decode_u64_array,
    kpf_names,
    kpf_test,
    parse_buddyinfo,
    parse_pagetypeinfo,
    parse_version,
    parse_vmstat,
    parse_zoneinfo,
)

BUDDY = """Node 0, zone      DMA      1      1      0      0      2      1      1      0      1      1      3
Node 0, zone    DMA32   1032    812    411    206     88     35     12      4      2      1    230
"""

PAGETYPE = """Page block order: 9
Pages per block:  512

Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10
Node    0, zone      DMA, type    Unmovable      0      0      0      0      0      0      0      0      0      0      0
Node    0, zone      DMA, type      Movable      1      1      0      0      2      1      1      0      1      1      3
Node    0, zone    DMA32, type    Unmovable     12      7      2      1      0      0      0      0      0      0      0
Node    0, zone    DMA32, type      Movable >100000  50000     12      3      1      0      0      0      0      0    230
Node    0, zone    DMA32, type  Reclaimable      0      1      0      0      0      0      0      0      0      0      0
Node    0, zone    DMA32, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0
Node    0, zone    DMA32, type          CMA      0      0      0      0      0      0      0      0      0      0      0
Node    0, zone    DMA32, type      Isolate      0      0      0      0      0      0      0      0      0      0      0

Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate
Node 0, zone      DMA            1            7            0            0            0            0
Node 0, zone    DMA32           40          970           14            0            0            0
"""  # noqa: E501

# The Normal zone of a mem=128M UML guest, as /proc/zoneinfo printed it (abridged).
ZONEINFO = """Node 0, zone   Normal
  per-node stats
      nr_inactive_anon 4096
      nr_active_anon 2
      nr_slab_reclaimable 96
  pages free     20109
        boost    0
        min      343
        low      428
        high     513
        spanned  32768
        present  32768
        managed  29468
        cma      0
        protection: (0, 0)
      nr_free_pages 20109
      nr_zone_inactive_anon 4096
      nr_zspages   0
  pagesets
    cpu: 0
              count: 162
              high:  428
              batch: 63
  vm stats threshold: 12
  node_unreclaimable:  0
  start_pfn:           0
Node 0, zone  Movable
  pages free     0
        boost    0
        min      0
        low      0
        high     0
        spanned  0
        present  0
        managed  0
        cma      0
        protection: (0, 0)
"""


def test_buddyinfo_counts_and_free_pages() -> None:
    zones = parse_buddyinfo(BUDDY)
    assert [(z.node, z.zone) for z in zones] == [(0, "DMA"), (0, "DMA32")]
    assert zones[0].counts == (1, 1, 0, 0, 2, 1, 1, 0, 1, 1, 3)
    # 1 + 2 + 2*16 + 32 + 64 + 256 + 512 + 3*1024
    assert zones[0].free_pages == 1 + 2 + 32 + 32 + 64 + 256 + 512 + 3072
    assert zones[0].free_blocks == 11


def test_buddyinfo_rejects_garbage_naming_file_and_line() -> None:
    with pytest.raises(SnapshotFormatError) as e:
        parse_buddyinfo(BUDDY + "Node 0, zone Normal 1 2 x\n", "snap/buddyinfo")
    assert "snap/buddyinfo, line 3" in str(e.value)
    assert "free count per order" in str(e.value)
    with pytest.raises(SnapshotFormatError, match="11 orders"):
        parse_buddyinfo(BUDDY + "Node 0, zone Normal 1 2 3\n")


def test_pagetypeinfo_capped_counts_and_blocks() -> None:
    p = parse_pagetypeinfo(PAGETYPE)
    assert p.pageblock_order == 9 and p.pages_per_block == 512
    assert p.types == ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")
    mov = p.free[(0, "DMA32", "Movable")]
    assert mov[0] == 100000 and mov[1] == 50000 and mov[10] == 230
    assert p.capped == frozenset({(0, "DMA32", "Movable", 0)})
    assert p.blocks[(0, "DMA32")] == {"Unmovable": 40, "Movable": 970, "Reclaimable": 14,
                                      "HighAtomic": 0, "CMA": 0, "Isolate": 0}
    assert set(p.zone_free(0, "DMA")) == {"Unmovable", "Movable"}


def test_pagetypeinfo_errors() -> None:
    with pytest.raises(SnapshotFormatError, match="Page block order"):
        parse_pagetypeinfo("Node 0, zone DMA 1 2\n")
    bad = PAGETYPE.replace("Pages per block:  512", "Pages per block:  500")
    with pytest.raises(SnapshotFormatError, match=r"2\^9"):
        parse_pagetypeinfo(bad)
    with pytest.raises(SnapshotFormatError, match="6 block counts"):
        parse_pagetypeinfo(PAGETYPE.replace("40          970", "40"))


def test_zoneinfo_zone_fields_pcp_and_empty_zone() -> None:
    normal, movable = parse_zoneinfo(ZONEINFO)
    assert (normal.name, normal.start_pfn, normal.spanned, normal.present, normal.managed) == (
        "Normal", 0, 32768, 32768, 29468)
    assert (normal.free, normal.min, normal.low, normal.high) == (20109, 343, 428, 513)
    assert normal.pcp_count == 162
    assert normal.counters["nr_free_pages"] == 20109
    assert "nr_inactive_anon" not in normal.counters  # per-node stats are not the zone's
    assert normal.populated and normal.end_pfn == 32768
    assert movable.start_pfn is None and not movable.populated


def test_zoneinfo_missing_field() -> None:
    with pytest.raises(SnapshotFormatError, match="'managed' line in zone Normal"):
        parse_zoneinfo(ZONEINFO.replace("        managed  29468\n", ""), "zoneinfo")


def test_vmstat_and_version() -> None:
    vm = parse_vmstat("nr_free_pages 20109\npgmigrate_success 2862\n\n")
    assert vm == {"nr_free_pages": 20109, "pgmigrate_success": 2862}
    with pytest.raises(SnapshotFormatError, match="line 2"):
        parse_vmstat("a 1\nb two\n")
    assert parse_version("Linux version 6.1.176 (debian-kernel@lists) #1 SMP") == "6.1.176"


def test_kpageflags_little_endian_words() -> None:
    # pfn 0: BUDDY; pfn 1: SLAB|COMPOUND_HEAD; pfn 2: RESERVED (bit 32); pfn 3: ANON|LRU|MMAP
    words = [1 << 10, (1 << 7) | (1 << 15), 1 << 32, (1 << 12) | (1 << 5) | (1 << 11)]
    data = struct.pack("<4Q", *words)
    flags = decode_u64_array(data, "kpageflags")
    assert flags.dtype == np.uint64 and flags.tolist() == words
    assert kpf_test(flags, KPF.BUDDY).tolist() == [True, False, False, False]
    assert kpf_test(flags, KPF.RESERVED).tolist() == [False, False, True, False]
    assert kpf_names(words[3]) == ["LRU", "MMAP", "ANON"]
    assert kpf_names(1 << 50) == ["bit50"]


def test_kpageflags_length_must_be_whole_words() -> None:
    with pytest.raises(SnapshotFormatError, match="whole number of 8-byte"):
        decode_u64_array(b"\0" * 12, "x/kpageflags")
