"""Boot a real Linux kernel in User-Mode Linux and run one workload in it.

Debian's ``user-mode-linux`` package ships ``linux.uml`` (Linux 6.1): a kernel that runs
as an ordinary process, here with the host's ``/`` as its root file system (hostfs), so
the guest runs the host's own shell, coreutils and a ``frag`` binary built on the host.
Settings, all measured here (shared/reference/kernel-mm.md section 7):

- ``setarch x86_64 -R``: without it host address randomisation makes UML reserve a hole
  of random size at the bottom of physical memory, and two boots differ in layout.
- ``con=null con0=fd:0,fd:1`` and stdin from /dev/null: the console goes to a log file.
- ``LD_PRELOAD`` of :file:`xstate-shim.c` (built on the host with gcc): UML 6.1 restores a
  guest's FPU registers from a buffer smaller than an AMX host's XSAVE state, which the
  host refuses, and init dies at once; the shim completes the buffer (its comment says how).
- Every boot is wrapped in a timeout and killed, with its whole process group (UML runs
  one host process per guest process), if it does not power off in time.

The guest's init is :file:`init.sh` (package data); it finds its run directory in the
``PAGEMIG_RUN`` kernel parameter and leaves its results there.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path

import attrs
import structlog

log = structlog.get_logger(__name__)

DEFAULT_MEM = "1024M"
DEFAULT_TIMEOUT = 600.0
MODULES_DIR = Path("/usr/lib/uml/modules")


class UmlUnavailable(RuntimeError):
    """User-Mode Linux cannot run here; the message says why and what would fix it."""


class UmlRunError(RuntimeError):
    """The guest booted but the run failed; the message carries the guest's own words."""


@attrs.frozen
class Workload:
    """A shipped workload: its guest script, the parameters it reads, and whether it
    needs the ``frag`` binary built on the host."""

    name: str
    script: str
    env: dict[str, str]
    needs_frag: bool = True
    needs_modules: bool = False
    description: str = ""


WORKLOADS: dict[str, Workload] = {
    "frag": Workload(
        "frag", "workload-frag.sh",
        {"FRAG_PERCENT": "75", "FRAG_KEEP": "1", "FRAG_DEN": "4", "FRAG_TOUCH": "0"},
        description="anonymous memory over 75% of RAM, 3 of every 4 pages given back",
    ),
    "zram": Workload(
        "zram", "workload-zram.sh",
        {"ZRAM_DISKSIZE": "600M", "ZRAM_FILL_PERCENT": "125", "FRAG_KEEP": "1", "FRAG_DEN": "4"},
        needs_modules=True,
        description="zram swap (600M), 125% of RAM written so the overflow goes to zsmalloc pages",
    ),
}


def find_uml() -> Path | None:
    """``linux.uml`` from $PAGEMIG_UML or PATH."""
    env = os.environ.get("PAGEMIG_UML")
    if env:
        return Path(env) if Path(env).is_file() else None
    found = shutil.which("linux.uml")
    return Path(found) if found else None


def check_uml(workload: Workload | None = None) -> Path:
    """The ``linux.uml`` to use, or :class:`UmlUnavailable` saying what is missing."""
    if platform.system() != "Linux":
        raise UmlUnavailable(f"User-Mode Linux runs only on a Linux host (this is {platform.system()})")
    if platform.machine() != "x86_64":
        raise UmlUnavailable(f"Debian's linux.uml is built for x86_64 hosts (this is {platform.machine()})")
    uml = find_uml()
    if uml is None:
        raise UmlUnavailable("linux.uml not found: install Debian's user-mode-linux package "
                             "(apt-get install user-mode-linux) or set PAGEMIG_UML")
    if workload is not None and workload.needs_frag and shutil.which("gcc") is None:
        raise UmlUnavailable("gcc not found: the oracle builds its frag program with the machine's gcc")
    if workload is not None and workload.needs_modules:
        if shutil.which("insmod") is None and not Path("/usr/sbin/insmod").exists():
            raise UmlUnavailable("insmod not found: install Debian's kmod package for the zram workload")
        if not MODULES_DIR.is_dir():
            raise UmlUnavailable(f"{MODULES_DIR} missing: the zram workload needs the UML modules "
                                 "from the user-mode-linux package")
    return uml


def parse_mem(mem: str) -> int:
    """``1024M`` / ``1G`` / ``262144K`` -> bytes, as the UML ``mem=`` option reads it."""
    s = mem.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if s and s[-1] in mult and s[:-1].isdigit():
        return int(s[:-1]) * mult[s[-1]]
    if s.isdigit():
        return int(s)
    raise ValueError(f"memory size {mem!r}: expected a number with K, M or G, like 1024M")


def data_file(name: str) -> str:
    return resources.files("pagemig.oracle").joinpath(name).read_text()


def build_frag(out: Path) -> Path:
    """Compile frag.c with the machine's gcc into ``out``."""
    src = out / "frag.c"
    src.write_text(data_file("frag.c"))
    exe = out / "frag"
    proc = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(src)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise UmlUnavailable(f"gcc could not build frag.c: {proc.stderr.strip()[:500]}")
    return exe


def build_xstate_shim(out: Path) -> Path | None:
    """Compile the ptrace shim (xstate-shim.c) into ``out``, or None without gcc.

    Built for every boot rather than only on hosts that need it: it passes every call
    through where UML's buffer fits, and deciding "needs it" would mean guessing the host's
    XSAVE size from cpuid, which is what the host kernel already knows."""
    if shutil.which("gcc") is None:
        return None
    src = out / "xstate-shim.c"
    src.write_text(data_file("xstate-shim.c"))
    lib = out / "xstate-shim.so"
    proc = subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise UmlUnavailable(f"gcc could not build xstate-shim.c: {proc.stderr.strip()[:500]}")
    return lib


FP_REGS_FAILED = "ptrace set fp regs failed"


@attrs.frozen
class GuestRun:
    """What one boot left behind."""

    run_dir: Path
    workload: str
    mem: str
    release: str
    times: dict[str, float]
    info: dict[str, str]
    boot_seconds: float  # host wall time of the whole boot, power-on to power-off

    @property
    def before(self) -> Path:
        return self.run_dir / "before"

    @property
    def after(self) -> Path:
        return self.run_dir / "after"

    @property
    def compact_seconds(self) -> float:
        return self.times["compact_end"] - self.times["compact_start"]

    @property
    def workload_seconds(self) -> float:
        return self.times["ready"] - self.times["boot"]


def run_guest(workload: str, mem: str = DEFAULT_MEM, timeout: float = DEFAULT_TIMEOUT,
              run_dir: Path | None = None, params: dict[str, str] | None = None) -> GuestRun:
    """Boot UML with ``mem``, run ``workload``, capture before and after compact_memory.

    ``run_dir`` (created if missing; a temporary directory under /tmp by default) keeps
    everything: snapshots, console log, times.  ``params`` override the workload's
    environment (e.g. ``FRAG_PERCENT``).
    """
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}: expected one of {', '.join(WORKLOADS)}")
    wl = WORKLOADS[workload]
    uml = check_uml(wl)
    parse_mem(mem)
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix=f"pagemig-oracle-{workload}-"))
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if any(c.isspace() for c in str(run_dir)):
        raise ValueError(f"run directory {run_dir} has a space: the kernel command line cannot carry it")
    for stale in ("status", "ready", "times", "times.info", "release", "console.log"):
        (run_dir / stale).unlink(missing_ok=True)
    for snap in ("before", "after"):
        if (run_dir / snap).exists():
            shutil.rmtree(run_dir / snap)
    init = run_dir / "init.sh"
    init.write_text(data_file("init.sh"))
    init.chmod(0o755)
    (run_dir / "workload.sh").write_text(data_file(wl.script))
    env = {"WORKLOAD": workload, "READY_TIMEOUT": str(int(timeout)), **wl.env, **(params or {})}
    (run_dir / "run.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    if wl.needs_frag:
        build_frag(run_dir)
    shim = build_xstate_shim(run_dir)
    host_env = dict(os.environ)
    if shim is not None:
        host_env["LD_PRELOAD"] = " ".join(filter(None, [str(shim), host_env.get("LD_PRELOAD", "")]))

    cmd = [str(uml), f"mem={mem}", "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw",
           f"init={init}", "con=null", "con0=fd:0,fd:1", f"PAGEMIG_RUN={run_dir}"]
    setarch = shutil.which("setarch")
    if setarch:
        cmd = [setarch, "x86_64", "-R", *cmd]
    else:
        log.warning("setarch not found: UML layout will vary from boot to boot")
    console = run_dir / "console.log"
    log.info("booting user-mode linux", workload=workload, mem=mem, run_dir=str(run_dir))
    t0 = time.monotonic()
    with console.open("wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=run_dir, start_new_session=True, env=host_env)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise UmlRunError(f"the guest did not power off within {timeout:.0f}s; killed. "
                              f"Console: {console}\n{_tail(console)}") from None
        except BaseException:
            _kill_group(proc)  # interrupted (Ctrl-C): take the guest down with us
            raise
    elapsed = time.monotonic() - t0
    status = (run_dir / "status").read_text().strip() if (run_dir / "status").exists() else ""
    if status != "ok":
        why = status or f"no status written (linux.uml exit code {proc.returncode})"
        if FP_REGS_FAILED in console.read_text(errors="replace"):
            why += (f"; the console says {FP_REGS_FAILED!r}: this host's FPU state is larger than "
                    "UML 6.1's buffer" + (" and the xstate shim did not help" if shim else
                                          ", and without gcc the oracle cannot build its xstate shim"))
        raise UmlRunError(f"oracle run failed: {why}. Console: {console}\n{_tail(console)}")
    times = {}
    for line in (run_dir / "times").read_text().splitlines():
        name, _, val = line.partition(" ")
        times[name] = float(val)
    info = {}
    if (run_dir / "times.info").exists():
        for line in (run_dir / "times.info").read_text().splitlines():
            name, _, val = line.partition(" ")
            info[name] = val
    release = (run_dir / "release").read_text().strip()
    log.info("guest powered off", seconds=round(elapsed, 2), release=release)
    return GuestRun(run_dir, workload, mem, release, times, info, elapsed)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End the boot's own process group (we started it with a new session), while its
    leader is still unreaped so that the group id cannot have been reused."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console log)"
