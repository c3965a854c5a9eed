"""A snapshot of a real machine's memory state, as read from a directory of /proc files.

A snapshot directory holds the files under their /proc names (``buddyinfo``,
``pagetypeinfo``, ``zoneinfo``, ``vmstat``, ``kpageflags``, optionally ``kpagecount``,
``version``, ``meminfo``), any of them optionally compressed as ``NAME.xz`` or
``NAME.gz``, and optionally a ``manifest.json`` written by ``pagemig snapshot capture``.
Without a manifest the directory still loads: that is how a snapshot copied by hand from
some other machine arrives.  With one, every listed file's sha256 is checked, because a
truncated kpageflags would otherwise import as a machine with a missing top.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from pagemig.snapshot.parse import (
    BuddyZone,
    PageTypeInfo,
    SnapshotFormatError,
    ZoneInfo,
    decode_u64_array,
    parse_buddyinfo,
    parse_pagetypeinfo,
    parse_version,
    parse_vmstat,
    parse_zoneinfo,
)
from pagemig.snapshot.validate import (
    ZoneCoverage,
    check_coverage,
    check_flag_words,
    check_free_pages,
    check_pagetypeinfo_buddyinfo,
    coverage,
)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "pagemig-snapshot"
REQUIRED = ("buddyinfo", "zoneinfo", "kpageflags")
OPTIONAL = ("pagetypeinfo", "vmstat", "kpagecount", "version", "meminfo")
COMPRESSED_SUFFIXES = (".xz", ".gz")


@attrs.frozen(eq=False)
class Snapshot:
    """Everything read from one snapshot directory, parsed but not yet interpreted."""

    source: Path
    buddyinfo: tuple[BuddyZone, ...]
    zoneinfo: tuple[ZoneInfo, ...]
    kpageflags: np.ndarray
    pagetypeinfo: PageTypeInfo | None = None
    vmstat: Mapping[str, int] = attrs.field(factory=dict)
    kpagecount: np.ndarray | None = None
    kernel: str | None = None
    page_size: int = 4096
    manifest: Mapping[str, Any] | None = None

    @property
    def populated_zones(self) -> tuple[ZoneInfo, ...]:
        return tuple(z for z in self.zoneinfo if z.populated)

    @property
    def nr_pfns(self) -> int:
        """One past the highest pfn of any populated zone."""
        return max((z.end_pfn for z in self.populated_zones), default=0)

    def buddy(self, node: int, zone: str) -> BuddyZone | None:
        for b in self.buddyinfo:
            if b.node == node and b.zone == zone:
                return b
        return None


def find_file(directory: Path, name: str) -> Path | None:
    """The file holding ``name`` in ``directory``: plain, ``.xz`` or ``.gz``."""
    for suffix in ("", *COMPRESSED_SUFFIXES):
        p = directory / f"{name}{suffix}"
        if p.is_file():
            return p
    return None


def read_bytes(path: Path) -> bytes:
    """A file's content, decompressed by its suffix; a corrupt archive names the file."""
    try:
        if path.suffix == ".xz":
            return lzma.decompress(path.read_bytes())
        if path.suffix == ".gz":
            return gzip.decompress(path.read_bytes())
        return path.read_bytes()
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError, OSError) as e:
        raise SnapshotFormatError(str(path), f"a readable {path.suffix or 'plain'} file", got=str(e)) from e


def read_text(path: Path) -> str:
    data = read_bytes(path)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as e:
        raise SnapshotFormatError(str(path), "ASCII text as the kernel prints it", got=str(e)) from e


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(directory: Path) -> dict[str, Any] | None:
    p = directory / MANIFEST
    if not p.is_file():
        return None
    try:
        m = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise SnapshotFormatError(str(p), "JSON written by 'pagemig snapshot capture'", got=str(e)) from e
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise SnapshotFormatError(str(p), f'a JSON object with "format": "{MANIFEST_FORMAT}"')
    files = m.get("files", {})
    if not isinstance(files, dict):
        raise SnapshotFormatError(str(p), '"files" as an object of name -> {sha256, bytes}')
    for name, meta in files.items():
        fp = directory / name
        if not fp.is_file():
            raise SnapshotFormatError(str(fp), "the file listed in manifest.json", got="missing")
        want = meta.get("sha256") if isinstance(meta, dict) else None
        if want and sha256_file(fp) != want:
            raise SnapshotFormatError(str(fp), f"sha256 {want} as manifest.json lists it",
                                      got="a different sha256 (file changed or truncated)")
    return m


def load_snapshot(directory: str | Path, *, allow_partial: bool = False) -> Snapshot:
    """Read and parse a snapshot directory; raise :class:`SnapshotFormatError` on bad input.

    ``allow_partial``: accept a kpageflags that shows fewer pfns of a zone than the zone
    manages (the importer then infers the rest; :mod:`pagemig.snapshot.validate`).
    """
    d = Path(directory)
    if not d.is_dir():
        raise SnapshotFormatError(str(d), "a snapshot directory", got="no such directory")
    manifest = load_manifest(d)
    paths = {}
    for name in REQUIRED:
        p = find_file(d, name)
        if p is None:
            raise SnapshotFormatError(
                str(d / name), f"/proc/{name} copied as {name}, {name}.xz or {name}.gz",
                got="missing",
            )
        paths[name] = p
    for name in OPTIONAL:
        p = find_file(d, name)
        if p is not None:
            paths[name] = p

    buddy = parse_buddyinfo(read_text(paths["buddyinfo"]), str(paths["buddyinfo"]))
    zones = parse_zoneinfo(read_text(paths["zoneinfo"]), str(paths["zoneinfo"]))
    flags = decode_u64_array(read_bytes(paths["kpageflags"]), str(paths["kpageflags"]))
    count = None
    if "kpagecount" in paths:
        count = decode_u64_array(read_bytes(paths["kpagecount"]), str(paths["kpagecount"]))
        if len(count) != len(flags):
            raise SnapshotFormatError(
                str(paths["kpagecount"]), f"{len(flags)} words, as many as kpageflags",
                got=f"{len(count)} words",
            )
    pti = None
    if "pagetypeinfo" in paths:
        pti = parse_pagetypeinfo(read_text(paths["pagetypeinfo"]), str(paths["pagetypeinfo"]))
    vm = parse_vmstat(read_text(paths["vmstat"]), str(paths["vmstat"])) if "vmstat" in paths else {}
    kernel = None
    if manifest and manifest.get("kernel"):
        kernel = str(manifest["kernel"])
    elif "version" in paths:
        kernel = parse_version(read_text(paths["version"]))
    page_size = int(manifest.get("page_size", 4096)) if manifest else 4096

    for z in zones:
        if z.populated and (z.node, z.name) not in {(b.node, b.zone) for b in buddy}:
            raise SnapshotFormatError(
                str(paths["buddyinfo"]), f"a line for node {z.node} zone {z.name}, which zoneinfo lists"
            )
    if not any(z.populated for z in zones):
        raise SnapshotFormatError(str(paths["zoneinfo"]), "at least one populated zone (with start_pfn)")
    snap = Snapshot(
        source=d, buddyinfo=buddy, zoneinfo=zones, kpageflags=flags, pagetypeinfo=pti,
        vmstat=vm, kpagecount=count, kernel=kernel, page_size=page_size, manifest=manifest,
    )
    validate(snap, {k: str(v) for k, v in paths.items()}, allow_partial)
    return snap


def zone_coverage(snap: Snapshot) -> tuple[ZoneCoverage, ...]:
    """How much of each populated zone the snapshot's kpageflags shows."""
    return coverage([(z.name, z.start_pfn or 0, z.spanned, z.managed) for z in snap.populated_zones],
                    len(snap.kpageflags))


def validate(snap: Snapshot, files: Mapping[str, str], allow_partial: bool) -> None:
    """The checks of :mod:`pagemig.snapshot.validate`, on a parsed snapshot, naming its files."""
    kpf = files.get("kpageflags", "kpageflags")
    check_coverage(zone_coverage(snap), snap.nr_pfns, len(snap.kpageflags), kpf, allow_partial)
    check_flag_words(snap.kpageflags, kpf)
    # files that must describe one machine at one moment (within a live capture's drift)
    buddy = {(b.node, b.zone): b.counts for b in snap.buddyinfo}
    pti = snap.pagetypeinfo
    pbo = pti.pageblock_order if pti else len(snap.buddyinfo[0].counts) - 1
    bfile, zfile = files.get("buddyinfo", "buddyinfo"), files.get("zoneinfo", "zoneinfo")
    if pti is not None:
        check_pagetypeinfo_buddyinfo(pti, buddy, files.get("pagetypeinfo", "pagetypeinfo"), bfile)
    for z in snap.populated_zones:
        b = snap.buddy(z.node, z.name)
        if b is not None:
            check_free_pages(z.free, b.free_pages, pbo, zfile, f"node {z.node} zone {z.name}'s pages free",
                             f"{bfile} counts in that zone")
    if "nr_free_pages" in snap.vmstat:
        check_free_pages(snap.vmstat["nr_free_pages"], sum(z.free for z in snap.zoneinfo), pbo,
                         files.get("vmstat", "vmstat"), "nr_free_pages", f"{zfile} counts over all zones")
