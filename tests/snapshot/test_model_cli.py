"""Snapshot directories as they arrive: with a manifest, raw under /proc names, compressed
either way, or broken; and the CLI's answers to each."""

from __future__ import annotations

import gzip
import json
import lzma
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pagemig.cli.snapshot import oracle_group, snapshot_group
from pagemig.snapshot.capture import capture, finalize
from pagemig.snapshot.model import load_snapshot
from pagemig.snapshot.parse import SnapshotFormatError


def raw_copy(src: Path, dst: Path, compress: str | None = None) -> Path:
    """The fixture as someone would copy it by hand: plain files, no manifest."""
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.name == "manifest.json":
            continue
        data = lzma.decompress(p.read_bytes()) if p.suffix == ".xz" else p.read_bytes()
        name = p.name.removesuffix(".xz")
        if compress == "gz" and name == "kpageflags":
            (dst / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (dst / name).write_bytes(data)
    return dst


def test_raw_directory_without_manifest_imports_like_the_original(frag128: Path, tmp_path: Path) -> None:
    orig = load_snapshot(frag128)
    raw = load_snapshot(raw_copy(frag128, tmp_path / "raw"))
    gz = load_snapshot(raw_copy(frag128, tmp_path / "gz", compress="gz"))
    assert orig.manifest is not None and raw.manifest is None
    assert orig.kernel == raw.kernel == "6.1.176"  # from manifest, and from the version file
    for s in (raw, gz):
        assert np.array_equal(s.kpageflags, orig.kpageflags)
        assert s.buddyinfo == orig.buddyinfo and s.zoneinfo == orig.zoneinfo


def test_kpagecount_is_optional(frag128: Path, tmp_path: Path) -> None:
    d = raw_copy(frag128, tmp_path / "raw")
    (d / "kpagecount").unlink()
    (d / "pagetypeinfo").unlink()
    s = load_snapshot(d)
    assert s.kpagecount is None and s.pagetypeinfo is None


@pytest.mark.parametrize(
    ("damage", "expect"),
    [
        (lambda d: (d / "buddyinfo").unlink(), "buddyinfo: expected /proc/buddyinfo copied as"),
        (lambda d: (d / "kpageflags").write_bytes(b"\0" * 13), "kpageflags: expected a whole number of 8-byte"),
        (lambda d: (d / "kpagecount").write_bytes(b"\0" * 8), "kpagecount: expected 29468 words"),
        (lambda d: (d / "zoneinfo").write_text("hello\n"), "zoneinfo, line 1: expected 'Node N, zone NAME' first"),
        (lambda d: (d / "kpageflags").rename(d / "kpageflags.xz"), "kpageflags.xz: expected a readable .xz file"),
        (lambda d: (d / "vmstat").write_bytes(b"nr_free_pages \xff\n"), "vmstat: expected ASCII text"),
    ],
)
def test_bad_directories_name_the_file(frag128: Path, tmp_path: Path, damage, expect: str) -> None:
    d = raw_copy(frag128, tmp_path / "bad")
    damage(d)
    with pytest.raises(SnapshotFormatError, match=expect):
        load_snapshot(d)
    result = CliRunner().invoke(snapshot_group, ["show", str(d)])
    assert result.exit_code == 2
    assert expect.split(":")[0] in result.output and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_manifest_checksum_catches_a_changed_file(frag128: Path, tmp_path: Path) -> None:
    d = tmp_path / "snap"
    shutil.copytree(frag128, d)
    (d / "buddyinfo").write_text((d / "buddyinfo").read_text().replace(" 4 \n", " 5 \n"))
    with pytest.raises(SnapshotFormatError, match="buddyinfo: expected sha256"):
        load_snapshot(d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(SnapshotFormatError, match=r"manifest\.json: expected JSON"):
        load_snapshot(d)


def test_not_a_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(snapshot_group, ["show", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "expected a snapshot directory" in result.output


def test_capture_from_a_proc_tree_round_trips(frag128: Path, tmp_path: Path) -> None:
    """capture reads /proc files by name; pointed at a copy of the fixture's files it must
    write a snapshot that loads to the same data, with a manifest that checks."""
    proc = raw_copy(frag128, tmp_path / "proc")
    out = capture(tmp_path / "snap", proc=proc, compress="gz")
    names = sorted(p.name for p in out.iterdir())
    assert "kpageflags.gz" in names and "kpagecount.gz" in names and "manifest.json" in names
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "pagemig-snapshot" and m["kernel"] == "6.1.176"
    assert set(m["files"]) == set(names) - {"manifest.json"}
    a, b = load_snapshot(out), load_snapshot(frag128)
    assert np.array_equal(a.kpageflags, b.kpageflags) and a.vmstat == b.vmstat
    with pytest.raises(Exception, match="not empty"):
        capture(out, proc=proc)


def test_finalize_a_raw_directory(frag128: Path, tmp_path: Path) -> None:
    d = finalize(raw_copy(frag128, tmp_path / "raw"), compress="xz", page_size=4096)
    assert (d / "kpageflags.xz").exists() and not (d / "kpageflags").exists()
    assert load_snapshot(d).manifest["source"] == "raw files"


def test_show_prints_the_checks(frag128: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(snapshot_group, ["show", str(frag128), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "free blocks, zone Normal: buddyinfo vs kpageflags" in out
    assert "kpageflags stops at pfn 0x731c, 3300 pages short of the zone end 0x8000" in out
    assert "Unmovable               5       5" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["free"][0]["buddyinfo"] == [4069, 4254, 29, 53, 33, 6, 2, 2, 3, 2, 4]
    assert rep["visible_pfns"] == 29468 and rep["nr_pfns"] == 32768


def test_import_gives_a_consistent_machine(frag128: Path) -> None:
    result = CliRunner().invoke(snapshot_group, ["import", str(frag128)])
    assert result.exit_code == 0, result.output
    assert "checker: ok" in result.output
    assert "20109 free pages" in result.output  # buddyinfo's total, tail included


def test_oracle_run_rejects_bad_input() -> None:
    r = CliRunner().invoke(oracle_group, ["run", "nosuch"])
    assert r.exit_code == 2 and "expected one of frag, zram" in r.output
    r = CliRunner().invoke(oracle_group, ["run", "frag", "--mem", "lots"])
    assert r.exit_code == 2 and "like 1024M" in r.output
    r = CliRunner().invoke(oracle_group, ["run", "frag", "--set", "oops"])
    assert r.exit_code == 2 and "NAME=VALUE" in r.output
