"""Capture a running Linux machine's memory state into a snapshot directory.

Reads the /proc files a snapshot needs (root is needed for kpageflags, kpagecount and
pagetypeinfo), compresses the two per-pfn binary files, and writes ``manifest.json``
with the kernel release, time, page size and every file's sha256.  The same
:func:`finalize` turns a directory of raw files (the oracle's, or one copied by hand)
into a manifest-carrying snapshot.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import lzma
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import structlog

from pagemig.snapshot.model import MANIFEST, MANIFEST_FORMAT, find_file, read_text, sha256_file
from pagemig.snapshot.parse import parse_version

log = structlog.get_logger(__name__)

#: read in this order: buddyinfo first (the reference for free blocks), vmstat last
TEXT_FILES = ("buddyinfo", "pagetypeinfo", "zoneinfo", "version", "meminfo")
BINARY_FILES = ("kpageflags", "kpagecount")
LAST_FILES = ("vmstat",)
COMPRESSORS = ("xz", "gz", "none")


class CaptureError(RuntimeError):
    """The machine cannot be read (not Linux, not root, file missing)."""


def _copy_proc(src: Path, dst: Path) -> None:
    try:
        with src.open("rb") as fi, dst.open("wb") as fo:
            shutil.copyfileobj(fi, fo, 1 << 20)
    except PermissionError as e:
        raise CaptureError(f"{src}: permission denied (kpageflags, kpagecount and pagetypeinfo "
                           "need root)") from e
    except OSError as e:
        raise CaptureError(f"{src}: {e.strerror or e}") from e


def compress_file(path: Path, how: str) -> Path:
    """Compress ``path`` to ``path.xz`` / ``path.gz`` and remove it; return the new path."""
    if how == "none":
        return path
    if how not in COMPRESSORS:
        raise ValueError(f"compression {how!r}: expected one of {', '.join(COMPRESSORS)}")
    out = path.with_name(path.name + "." + how)
    data = path.read_bytes()
    if how == "xz":
        out.write_bytes(lzma.compress(data, preset=6))
    else:
        out.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    path.unlink()
    return out


def capture(dest: str | Path, proc: str | Path = "/proc", compress: str = "xz") -> Path:
    """Copy this machine's /proc files into ``dest`` (created; must be empty) as a snapshot."""
    if platform.system() != "Linux":
        raise CaptureError(f"snapshot capture reads Linux's /proc; this is {platform.system()}")
    proc, d = Path(proc), Path(dest)
    if d.exists() and any(d.iterdir()):
        raise CaptureError(f"{d}: not empty; capture into a new directory")
    d.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    for name in (*TEXT_FILES, *BINARY_FILES, *LAST_FILES):
        src = proc / name
        if not src.exists():
            if name in ("kpagecount", "meminfo", "version"):
                continue
            raise CaptureError(f"{src}: missing (kernel without CONFIG_PROC_PAGE_MONITOR?)")
        _copy_proc(src, d / name)
    finalize(d, compress=compress, captured_at=started, source="pagemig snapshot capture",
             page_size=os.sysconf("SC_PAGE_SIZE"))
    log.info("snapshot captured", dest=str(d))
    return d


def finalize(directory: str | Path, compress: str = "xz", captured_at: dt.datetime | None = None,
             source: str = "raw files", page_size: int = 4096, extra: dict[str, Any] | None = None) -> Path:
    """Compress the binary files of a raw snapshot directory and write its manifest.

    ``page_size`` is the captured machine's (not necessarily this one's): no /proc file
    states it, so a capture passes its own and anyone else says what it was.
    """
    d = Path(directory)
    for name in BINARY_FILES:
        p = d / name
        if p.is_file():
            compress_file(p, compress)
    kernel = None
    vp = find_file(d, "version")
    if vp is not None:
        kernel = parse_version(read_text(vp))
    if captured_at is None:
        ref = find_file(d, "buddyinfo")
        ts = ref.stat().st_mtime if ref else dt.datetime.now(dt.UTC).timestamp()
        captured_at = dt.datetime.fromtimestamp(ts, dt.UTC)
    files = {}
    for p in sorted(d.iterdir()):
        if p.is_file() and p.name != MANIFEST:
            files[p.name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": 1,
        "kernel": kernel or (platform.release() if source == "pagemig snapshot capture" else None),
        "captured_at": captured_at.isoformat(timespec="seconds"),
        "page_size": page_size,
        "source": source,
        "files": files,
        **(extra or {}),
    }
    (d / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return d
