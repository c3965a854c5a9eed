"""Declarative checking of one TOML table, shared by the scenario loader, the built-in
workloads and any plugin that wants the same error messages.

A table is checked against a dict of :class:`Field`: each field parses its value
(units and ranges included) or raises; unknown keys are refused with a difflib
suggestion for a near miss.  Errors are :class:`TableError`, which carries the key
*relative to the table*, so whoever knows where the table sits (the scenario loader
knows ``workloads[1]`` or ``drivers.balloon``) can print the full dotted path, the
file and the value.  A plugin's own ``validate`` may raise a plain ``ValueError``
too; it just gets a less precise key.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from pagemig.mm.gfp import parse_gfp
from pagemig.mm.pages import MAX_ORDER
from pagemig.sim import units


class TableError(ValueError):
    """One bad key in one table: ``key`` is relative to the table ("" for the table itself)."""

    def __init__(self, key: str, value: object, expected: str, hint: str = "", *, unknown: bool = False,
                 missing: bool = False) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        self.hint = hint
        self.unknown = unknown
        self.missing = missing
        super().__init__(self.describe(key))

    def describe(self, full_key: str) -> str:
        """The message with the key spelled as the caller knows it."""
        if self.unknown:
            msg = f"{full_key}: unknown key"
            return msg + (f"; {self.hint}" if self.hint else "")
        if self.missing:
            return f"{full_key}: missing; expected {self.expected}" + (f" ({self.hint})" if self.hint else "")
        msg = f"{full_key} = {show_value(self.value)}: expected {self.expected}" if full_key else (
            f"{show_value(self.value)}: expected {self.expected}")
        return msg + (f"; {self.hint}" if self.hint else "")

    def within(self, prefix: str) -> TableError:
        """The same error, its key prefixed by the table's own path."""
        key = join_key(prefix, self.key)
        return TableError(key, self.value, self.expected, self.hint, unknown=self.unknown, missing=self.missing)


def join_key(prefix: str, key: str) -> str:
    if not prefix:
        return key
    if not key:
        return prefix
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


def show_value(value: object, limit: int = 60) -> str:
    """A value as it would appear in the TOML file (strings in double quotes)."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def suggest(key: str, known: Iterable[str]) -> str:
    """'did you mean "x"?' for a near miss, else the list of known keys."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f'did you mean "{close[0]}"? (known: {", ".join(known)})'
    return f"known keys here: {', '.join(known)}" if known else "this table takes no keys"


REQUIRED: Any = object()


@attrs.frozen
class Field:
    """One key of a table: how to parse it, its default (``REQUIRED`` if none) and a
    short description for docs and error messages."""

    parse: Callable[[object], Any]
    default: Any = REQUIRED
    expected: str = "a value"
    doc: str = ""
    default_text: str = ""  # the default as a person writes it ("48MiB"), for docs

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _field(parse: Callable[[object], Any], expected: str, default: Any, doc: str) -> Field:
    """A field whose default is written as in a scenario file ("48MiB") and parsed here,
    once, so that a bad default is a bug found at import and docs show what users write."""
    if default is REQUIRED or default is None:
        return Field(parse, default, expected, doc, "" if default is REQUIRED else "none")
    return Field(parse, parse(default), expected, doc, show_value(default))


def _wrap(parse: Callable[[object], Any], expected: str) -> Callable[[object], Any]:
    """Turn a units parser's UnitError into the table's message."""

    def run(value: object) -> Any:
        try:
            return parse(value)
        except units.UnitError as exc:
            raise _Bad(exc.expected, exc.hint) from None

    run.__doc__ = expected
    return run


class _Bad(ValueError):
    """Raised by a field parser: what was expected, and a hint."""

    def __init__(self, expected: str, hint: str = "") -> None:
        super().__init__(expected)
        self.expected = expected
        self.hint = hint


# ------------------------------------------------------------------ field constructors
def size(default: Any = REQUIRED, doc: str = "", *, minimum: int = 0) -> Field:
    """A size in bytes ("512MiB")."""

    def parse(value: object) -> int:
        n = units.parse_size(value)
        if n < minimum:
            raise units.UnitError(units.SIZE_EXPECTED, f"at least {units.format_size(minimum)}")
        return n

    return _field(_wrap(parse, units.SIZE_EXPECTED), units.SIZE_EXPECTED, default, doc)


def pages(default: Any = REQUIRED, doc: str = "", *, minimum: int = 0) -> Field:
    """A size given in any unit, returned in 4 KiB pages."""

    def parse(value: object) -> int:
        n = units.parse_pages(value)
        if n < minimum:
            raise units.UnitError(units.SIZE_EXPECTED, f"at least {minimum} page(s)")
        return n

    return _field(_wrap(parse, units.SIZE_EXPECTED), units.SIZE_EXPECTED, default, doc)


def duration(default: Any = REQUIRED, doc: str = "", *, positive: bool = False) -> Field:
    """A duration ("90s", "500ms"), in seconds; ``positive`` refuses zero."""
    return _field(_wrap(lambda v: units.parse_duration(v, allow_zero=not positive), units.DURATION_EXPECTED),
                  units.DURATION_EXPECTED, default, doc)


def percent(default: Any = REQUIRED, doc: str = "") -> Field:
    """A share ("35%", or a fraction between 0 and 1), as a fraction."""
    return _field(_wrap(units.parse_percent, units.PERCENT_EXPECTED), units.PERCENT_EXPECTED, default, doc)


def rate(default: Any = REQUIRED, doc: str = "") -> Field:
    """A rate ("20/s", "100/min"), in events per second."""
    return _field(_wrap(units.parse_rate, units.RATE_EXPECTED), units.RATE_EXPECTED, default, doc)


def integer(default: Any = REQUIRED, doc: str = "", *, minimum: int | None = None,
            maximum: int | None = None) -> Field:
    """An integer (not a bool), optionally bounded."""
    if minimum is not None and maximum is not None:
        expected = f"an integer from {minimum} to {maximum}"
    elif minimum is not None:
        expected = f"an integer >= {minimum}"
    elif maximum is not None:
        expected = f"an integer <= {maximum}"
    else:
        expected = "an integer"

    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(expected)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise _Bad(expected)
        return value

    return _field(parse, expected, default, doc)


def number(default: Any = REQUIRED, doc: str = "", *, minimum: float | None = None,
           maximum: float | None = None) -> Field:
    """A finite number (int or float, not a bool), optionally bounded; returned as a float."""
    expected = "a number" + (f" from {minimum:g}" if minimum is not None else "") + (
        f" to {maximum:g}" if maximum is not None else "")

    def parse(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _Bad(expected)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise _Bad(expected)
        return float(value)

    return _field(parse, expected, default, doc)


def boolean(default: Any = REQUIRED, doc: str = "") -> Field:
    """true or false (a quoted "true" gets a hint)."""
    def parse(value: object) -> bool:
        if not isinstance(value, bool):
            raise _Bad("true or false", "write it without quotes" if value in ("true", "false") else "")
        return value

    return _field(parse, "true or false", default, doc)


def string(default: Any = REQUIRED, doc: str = "") -> Field:
    """A string."""
    def parse(value: object) -> str:
        if not isinstance(value, str):
            raise _Bad("a string")
        return value

    return _field(parse, "a string", default, doc)


def choice(options: Iterable[str], default: Any = REQUIRED, doc: str = "") -> Field:
    """One of a fixed set of strings (a near miss gets a "did you mean")."""
    opts = tuple(options)
    expected = "one of " + ", ".join(f'"{o}"' for o in opts)

    def parse(value: object) -> str:
        if not isinstance(value, str) or value not in opts:
            close = difflib.get_close_matches(str(value), opts, n=1, cutoff=0.6)
            raise _Bad(expected, f'did you mean "{close[0]}"?' if close else "")
        return value

    return _field(parse, expected, default, doc)


def order(default: Any = REQUIRED, doc: str = "") -> Field:
    """An allocation order, 0 to MAX_ORDER."""
    return integer(default, doc, minimum=0, maximum=MAX_ORDER)


GFP_EXPECTED = 'a GFP mask such as "GFP_KERNEL" or "GFP_KERNEL | __GFP_NORETRY"'


def gfp(default: Any = REQUIRED, doc: str = "") -> Field:
    """A GFP mask by name; the parsed value is ``(text, mask)`` so reports can show the name."""

    def parse(value: object) -> tuple[str, int]:
        if not isinstance(value, str):
            raise _Bad(GFP_EXPECTED)
        try:
            mask = parse_gfp(value)
        except ValueError as exc:
            raise _Bad(GFP_EXPECTED, str(exc)) from None
        return " | ".join(p.strip() for p in value.split("|")), mask

    return _field(parse, GFP_EXPECTED, default, doc)


# ------------------------------------------------------------------ checking a table
def check_table(table: object, fields: Mapping[str, Field], *, extra_ok: bool = False) -> dict[str, Any]:
    """Parse every field of ``table``; defaults fill the missing ones.

    Raises :class:`TableError` for the first problem, in the table's key order so
    that the error a user sees is the first one in their file.
    """
    if not isinstance(table, Mapping):
        raise TableError("", table, "a table (key = value pairs)")
    out: dict[str, Any] = {}
    for key, value in table.items():
        field = fields.get(key)
        if field is None:
            if extra_ok:
                out[key] = value
                continue
            raise TableError(key, value, "", suggest(key, fields), unknown=True)
        try:
            out[key] = field.parse(value)
        except _Bad as exc:
            raise TableError(key, value, exc.expected, exc.hint) from None
    for key, field in fields.items():
        if key in out:
            continue
        if field.required:
            raise TableError(key, None, field.expected, field.doc, missing=True)
        out[key] = field.default
    return out


def validator(fields: Mapping[str, Field]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A ``validate`` callable for WorkloadInfo or DriverInfo built from fields."""

    def validate(table: Mapping[str, Any]) -> dict[str, Any]:
        return check_table(table, fields)

    validate.fields = fields  # type: ignore[attr-defined]  # docs and `pagemig scenarios --keys` read them
    return validate
