"""Built-in workloads, registered through the same hooks as any third party's.

A third-party workload subclasses :class:`pagemig.api.Workload` and registers a
:class:`pagemig.api.WorkloadInfo` from its plugin's ``pagemig_register_workloads`` hook;
the built-in ones import only :mod:`pagemig.api` and this package.
"""

from pagemig.api import ProbeStats, Workload, WorkloadInfo
from pagemig.workloads.base import CompoundOwner, TrackedOwner

__all__ = ["CompoundOwner", "ProbeStats", "TrackedOwner", "Workload", "WorkloadInfo"]
