"""The GPU driver's scenario table (``[drivers.gpu]``), checked with the core's table schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pagemig.sim import schema
from pagemig.sim.schema import Field, TableError

FIELDS: dict[str, Field] = {
    "movable": schema.boolean(True, "false: the driver before the seed's series (unmovable pages)"),
    "target": schema.percent(0.0, "share of memory the GPU's applications keep in buffers (0: no workload)"),
    "buffer_min": schema.pages("64KiB", "smallest buffer", minimum=1),
    "buffer_max": schema.pages("8MiB", "largest buffer (sizes are log-uniform between the two)", minimum=1),
    "buffer_life": schema.duration("30s", "mean life of a buffer (exponential; 0: buffers live for ever)"),
    "pinned_fraction": schema.percent(0.1, "share of buffers pinned for DMA (scanout, camera): never isolated"),
    "job_rate": schema.rate(60.0, "GPU jobs submitted per second"),
    "job_time": schema.duration("50ms", "time from a job's submission until its fence signals"),
    "buffers_per_job": schema.integer(3, "buffers one job uses (it renders into the first)", minimum=1,
                                      maximum=64),
    "seed": schema.integer(0, "seed of the driver's own random stream when no run provides one", minimum=0),
}

_validate = schema.validator(FIELDS)


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``[drivers.gpu]``; keys starting with ``_`` are the simulator's and pass through."""
    if not isinstance(options, Mapping):
        raise TableError("", options, "a table ([drivers.gpu])")
    private = {k: v for k, v in options.items() if isinstance(k, str) and k.startswith("_")}
    public = {k: v for k, v in options.items() if k not in private}
    out = _validate(public)
    if out["buffer_min"] > out["buffer_max"]:
        raise TableError("buffer_min", public.get("buffer_min"), f"at most buffer_max ({out['buffer_max']} pages)")
    return {**out, **private}


validate_options.fields = FIELDS  # type: ignore[attr-defined]
