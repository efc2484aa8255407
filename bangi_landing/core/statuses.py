"""Internal lead statuses and the Status Mapper that turns a postback into one.

The tracker maps every postback to one of four internal statuses. A campaign's
mapper names the postback parameter to read and a table of external values;
values are matched trimmed and case-insensitively, an internal status name
always maps to itself, and anything unmatched is ``trash`` (the seed's
troubleshooting table: "Postback status becomes trash").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Status = Literal["accept", "expect", "reject", "trash"]
STATUSES: Final[tuple[Status, ...]] = ("accept", "expect", "reject", "trash")
PAID_STATUSES: Final[frozenset[str]] = frozenset({"accept", "expect"})

# AlterCPA Pro's lead statuses (seed 000), one to one with ours.
ProStatus = Literal["hold", "approve", "cancel", "trash"]
PRO_STATUSES: Final[dict[Status, ProStatus]] = {
    "expect": "hold",
    "accept": "approve",
    "reject": "cancel",
    "trash": "trash",
}
_FROM_PRO: Final[dict[str, Status]] = {pro: ours for ours, pro in PRO_STATUSES.items()}


def as_status(value: object) -> Status | None:
    """``value`` as an internal status name (trimmed, any case), or ``None``."""
    if isinstance(value, str):
        folded = value.strip().casefold()
        for status in STATUSES:
            if folded == status:
                return status
    return None


def as_any_status(value: object) -> Status | None:
    """Like :func:`as_status`, also taking AlterCPA Pro's names (``approve`` is ``accept``)."""
    status = as_status(value)
    if status is None and isinstance(value, str):
        status = _FROM_PRO.get(value.strip().casefold())
    return status


class MapperError(ValueError):
    """A status mapper definition that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class StatusMapper:
    """Reads ``parameter`` from a postback and maps its value through ``values``."""

    parameter: str
    values: Mapping[str, Status] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Keys are kept folded so lookups are one dict access.
        folded = {key.strip().casefold(): status for key, status in self.values.items()}
        object.__setattr__(self, "values", folded)

    def map(self, params: Mapping[str, Any]) -> Status:
        """The status of a postback; ``trash`` when nothing matches."""
        return self.lookup(params) or "trash"

    def lookup(self, params: Mapping[str, Any]) -> Status | None:
        """The status of a postback, or ``None`` when its value matches nothing."""
        raw = params.get(self.parameter)
        if isinstance(raw, list):  # a repeated query parameter: the first one counts
            raw = raw[0] if raw else None
        if raw is None or isinstance(raw, dict | bool):
            return None
        value = str(raw).strip().casefold()
        return self.values.get(value) or as_status(value)

    @classmethod
    def from_json(cls, data: object) -> StatusMapper:
        """Build a mapper from ``{"parameter": ..., "values": {...}}``, or raise MapperError."""
        if not isinstance(data, dict):
            raise MapperError('statusMapper must be an object: {"parameter": ..., "values": {...}}')
        unknown = set(data) - {"parameter", "values"}
        if unknown:
            raise MapperError(f"statusMapper has unknown field {sorted(unknown)[0]!r}")
        parameter = data.get("parameter")
        if not isinstance(parameter, str) or not parameter.strip():
            raise MapperError("statusMapper.parameter must be a non-empty string")
        values = data.get("values", {})
        if not isinstance(values, dict):
            raise MapperError("statusMapper.values must be an object of external value -> status")
        table: dict[str, Status] = {}
        for external, internal in values.items():
            status = as_status(internal)
            if status is None:
                raise MapperError(
                    f"statusMapper.values[{external!r}] must be one of {', '.join(STATUSES)}"
                )
            table[external] = status
        return cls(parameter.strip(), table)

    def to_json(self) -> dict[str, Any]:
        return {"parameter": self.parameter, "values": dict(self.values)}
