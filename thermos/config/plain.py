"""A read-only view of a pystachio struct's plain data with pystachio's accessor API.

Every accessor of a pystachio object (`proc.name().get()`) copies and re-interpolates it: a
100-process task cost the runner hundreds of milliseconds of such calls before its first record
(planners, plans and checks each walk every process). `Struct.get()` turns a whole task into
plain data in well under a millisecond; this view answers the same calls from that data, so
code written against pystachio (the planner, the runner, Aurora-era callers) runs unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class PlainValue:
    """A leaf: `.get()` returns the value, as pystachio's basic types do."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def get(self) -> Any:
        return self._value

    def __iter__(self) -> Any:
        return iter(_wrap(item) for item in self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        return self._value == (other.get() if isinstance(other, PlainValue | PlainStruct) else other)

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "PlainValue(%r)" % (self._value,)


class PlainStruct:
    """A struct: `.field()` returns the field's view, `.has_field()` whether it is set."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    @classmethod
    def of(cls, struct: Any) -> PlainStruct:
        """The view of a pystachio struct (already interpolated, or holding raw `{{refs}}`)."""
        return cls(struct.get())

    def get(self) -> Mapping[str, Any]:
        return self._data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("has_"):
            key = name[4:]
            return lambda: self._data.get(key) is not None
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._data:
            return lambda: PlainValue(None)
        value = self._data[name]
        return lambda: _wrap(value)

    def __repr__(self) -> str:
        return "PlainStruct(%r)" % (dict(self._data),)


def _wrap(value: Any) -> Any:
    if isinstance(value, Mapping):
        return PlainStruct(value)
    if isinstance(value, list | tuple):
        return [_wrap(item) for item in value]
    return PlainValue(value)
