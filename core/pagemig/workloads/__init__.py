"""Built-in workloads, registered through the same hooks as any third party's."""
