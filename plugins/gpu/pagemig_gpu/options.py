"""The GPU driver's scenario table (``[drivers.gpu]``), checked with pagemig.api's option fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pagemig.api import (
    Field,
    TableError,
    boolean_field,
    duration_field,
    integer_field,
    pages_field,
    percent_field,
    rate_field,
    table_validator,
)

FIELDS: dict[str, Field] = {
    "movable": boolean_field(True, "false: the driver before the seed's series (unmovable pages)"),
    "target": percent_field(0.0, "share of memory the GPU's applications keep in buffers (0: no workload)"),
    "buffer_min": pages_field("64KiB", "smallest buffer", minimum=1),
    "buffer_max": pages_field("8MiB", "largest buffer (sizes are log-uniform between the two)", minimum=1),
    "buffer_life": duration_field("30s", "mean life of a buffer (exponential; 0: buffers live for ever)"),
    "pinned_fraction": percent_field(0.1, "share of buffers pinned for DMA (scanout, camera): never isolated"),
    "job_rate": rate_field(60.0, "GPU jobs submitted per second"),
    "job_time": duration_field("50ms", "time from a job's submission until its fence signals"),
    "buffers_per_job": integer_field(3, "buffers one job uses (it renders into the first)", minimum=1,
                                      maximum=64),
    "seed": integer_field(0, "seed of the driver's own random stream when no run provides one", minimum=0),
}

_validate = table_validator(FIELDS)


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
