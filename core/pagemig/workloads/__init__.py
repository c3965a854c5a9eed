"""Built-in workloads, registered through the same hooks as any third party's.

A third-party workload subclasses :class:`Workload` and registers a
:class:`WorkloadInfo` from its plugin's ``pagemig_register_workloads`` hook.
"""

from pagemig.workloads.base import CompoundOwner, ProbeStats, TrackedOwner, Workload, WorkloadInfo

__all__ = ["CompoundOwner", "ProbeStats", "TrackedOwner", "Workload", "WorkloadInfo"]
