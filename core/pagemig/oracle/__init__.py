"""The oracle: the same workload on a real Linux kernel, run here in User-Mode Linux.

:mod:`pagemig.oracle.uml` boots the guest and runs a shipped workload (``frag``,
``zram``), capturing snapshots before and after ``compact_memory``;
:mod:`pagemig.oracle.compare` sets the real figures beside the simulator's on the same
imported "before" snapshot.  Package data: ``init.sh`` (the guest's PID 1),
``workload-*.sh`` and ``frag.c``.
"""
