"""The hanging protocols' file format as data: rules, viewports, protocols, read from and written to
JSON (resources/hanging_protocols/README.md describes it). `hanging.py` loads, chooses and saves."""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workstation.core.model.display_set import DisplaySet
from workstation.core.resources import resource_path

FORMAT = 1
"""The version of the file format; a file of a newer format is skipped with a warning."""
FOLDER = "hanging_protocols"
SHIPPED = resource_path(FOLDER)
DEFAULT = "Default"
"""The name of the arrangement made when no protocol matches."""
MAX_SIDE = 8

TEXT, NUMBER, FLAG = "text", "number", "flag"

_SET_ATTRIBUTES: dict[str, tuple[str, Callable[[DisplaySet], Any]]] = {
    "Modality": (TEXT, lambda d: d.series.Modality),
    "SeriesDescription": (TEXT, lambda d: d.series.SeriesDescription),
    "SeriesNumber": (NUMBER, lambda d: d.series.SeriesNumber),
    "BodyPartExamined": (TEXT, lambda d: d.series.BodyPartExamined),
    "orientation": (TEXT, lambda d: d.orientation),
    "label": (TEXT, lambda d: d.label),
    "is_localizer": (FLAG, lambda d: d.is_localizer),
    "is_multiframe": (FLAG, lambda d: d.is_multiframe),
    "frames": (NUMBER, len),
    "frame_rate": (NUMBER, lambda d: d.frame_rate),
    "ImageLaterality": (TEXT, lambda d: d.ImageLaterality),
    "ViewPosition": (TEXT, lambda d: d.ViewPosition),
}
"""What a viewport's selector can ask of a display set."""

_STUDY_ATTRIBUTES: dict[str, str] = {
    **{name: kind for name, (kind, _) in _SET_ATTRIBUTES.items()},
    "StudyDescription": TEXT,
    "NumberOfSeries": NUMBER,
    "NumberOfDisplaySets": NUMBER,
    "has_prior": FLAG,
}
"""What a protocol's match rules can ask of a study: its own attributes, and any display set's."""

_OPERATORS = ("equals", "in", "matches", "glob", "min", "max")
_OPERATORS_OF = {TEXT: ("equals", "in", "matches", "glob"), NUMBER: ("equals", "in", "min", "max"),
                 FLAG: ("equals",)}


class ProtocolError(ValueError):
    """A protocol that cannot be used, in words naming the part that is wrong."""


# --- the protocol as data ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One test of an attribute; or, with `any`, a test that passes when one of its rules does.

    A rule on a study passes when one of its values passes (the study has a display set that...);
    `negate` makes it pass when none does. Text compares ignoring case and surrounding spaces;
    `matches` is a case-insensitive regular expression searched anywhere in the text, `glob` a
    case-insensitive shell pattern over the whole text.
    """

    attribute: str = ""
    operator: str = ""
    value: Any = None
    weight: float = 1.0
    required: bool = False
    negate: bool = False
    any: tuple[Rule, ...] = ()
    _regex: re.Pattern | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.operator == "matches" and self._regex is None:
            object.__setattr__(self, "_regex", re.compile(self.value, re.IGNORECASE))

    def passes(self, values: Callable[[str], Sequence[Any]]) -> bool:
        if self.any:
            hit = any(rule.passes(values) for rule in self.any)
        else:
            hit = any(self._test(value) for value in values(self.attribute))
        return hit != self.negate

    def _test(self, value: Any) -> bool:
        op, wanted = self.operator, self.value
        if op in ("min", "max"):
            if not _is_number(value):
                return False
            return value >= wanted if op == "min" else value <= wanted
        if op == "matches":
            return isinstance(value, str) and self._regex.search(value) is not None
        if op == "glob":
            return isinstance(value, str) and fnmatch.fnmatchcase(value.strip().casefold(), wanted.casefold())
        return any(_same(value, w) for w in (wanted if op == "in" else (wanted,)))

    def to_json(self) -> dict:
        out: dict[str, Any] = {}
        if self.any:
            out["any"] = [rule.to_json() for rule in self.any]
        else:
            out["attribute"] = self.attribute
            out[self.operator] = list(self.value) if self.operator == "in" else self.value
        if self.negate:
            out["not"] = True
        if self.weight != 1.0:
            out["weight"] = int(self.weight) if float(self.weight).is_integer() else self.weight
        if self.required:
            out["required"] = True
        return out


@dataclass(frozen=True)
class Viewport:
    """Which display set one cell of the layout asks for: from the current study or the prior."""

    study: str = "current"
    select: tuple[Rule, ...] = ()
    repeat: bool = False
    """May show a display set another viewport of the protocol shows (two windows of one stack)."""
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        out: dict[str, Any] = {"study": self.study, "select": [rule.to_json() for rule in self.select]}
        if self.repeat:
            out["repeat"] = True
        if self.options:
            out["options"] = dict(self.options)
        return out


@dataclass(frozen=True)
class Protocol:
    name: str
    rows: int
    columns: int
    viewports: tuple[Viewport | None, ...]
    """One per cell, row by row; None is a cell left empty."""
    match: tuple[Rule, ...] = ()
    prior: tuple[Rule, ...] = ()
    """What an earlier study must be to count as the prior (all must pass); none: any earlier study."""
    description: str = ""
    source: str = field(default="shipped", compare=False)
    """shipped or user."""
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, data: Any, source: str = "shipped", path: Path | None = None) -> Protocol:
        """A protocol from its parsed JSON; ProtocolError says what is wrong."""
        _keys(data, "the protocol", {"format", "name", "description", "match", "prior", "layout", "viewports"})
        version = data.get("format", FORMAT)
        if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT:
            raise ProtocolError(f"format {version!r} is not one this version reads (up to {FORMAT})")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ProtocolError("it has no name")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ProtocolError("description is not text")
        layout = data.get("layout")
        _keys(layout, "layout", {"rows", "columns"})
        rows, columns = layout.get("rows"), layout.get("columns")
        for side, value in (("rows", rows), ("columns", columns)):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SIDE:
                raise ProtocolError(f"layout {side} must be a whole number from 1 to {MAX_SIDE}, not {value!r}")
        viewports = data.get("viewports")
        if not isinstance(viewports, list) or len(viewports) != rows * columns:
            count = len(viewports) if isinstance(viewports, list) else "no list of"
            raise ProtocolError(f"a {rows}x{columns} layout needs {rows * columns} viewports, it has {count}")
        prior = data.get("prior", {})
        _keys(prior, "prior", {"match"})
        return cls(
            name=name.strip(), rows=rows, columns=columns,
            viewports=tuple(_viewport(v, f"viewport {i + 1}") for i, v in enumerate(viewports)),
            match=_rules(data.get("match", []), "match", _STUDY_ATTRIBUTES),
            prior=_rules(prior.get("match", []), "prior match",
                         {k: v for k, v in _STUDY_ATTRIBUTES.items() if k != "has_prior"}),
            description=description, source=source, path=path,
        )

    def to_json(self) -> dict:
        out: dict[str, Any] = {"format": FORMAT, "name": self.name}
        if self.description:
            out["description"] = self.description
        out["match"] = [rule.to_json() for rule in self.match]
        if self.prior:
            out["prior"] = {"match": [rule.to_json() for rule in self.prior]}
        out["layout"] = {"rows": self.rows, "columns": self.columns}
        out["viewports"] = [v.to_json() if v is not None else None for v in self.viewports]
        return out


def _keys(data: Any, where: str, allowed: set[str]) -> None:
    if not isinstance(data, dict):
        raise ProtocolError(f"{where} is not an object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ProtocolError(f"{where}: unknown key {', '.join(map(repr, unknown))} "
                            f"(known: {', '.join(sorted(allowed))})")


def _viewport(data: Any, where: str) -> Viewport | None:
    if data is None:
        return None
    _keys(data, where, {"study", "select", "repeat", "options"})
    study = data.get("study", "current")
    if study not in ("current", "prior"):
        raise ProtocolError(f"{where}: study must be 'current' or 'prior', not {study!r}")
    repeat = data.get("repeat", False)
    if not isinstance(repeat, bool):
        raise ProtocolError(f"{where}: repeat must be true or false")
    options = data.get("options", {})
    if not isinstance(options, dict) or not all(
            isinstance(k, str) and isinstance(v, str | bool | int | float) for k, v in options.items()):
        raise ProtocolError(f"{where}: options must map names to text, numbers or true/false")
    return Viewport(study, _rules(data.get("select", []), f"{where} select", _SET_ATTRIBUTES), repeat,
                    dict(options))


def _rules(data: Any, where: str, attributes: Mapping[str, Any]) -> tuple[Rule, ...]:
    if not isinstance(data, list):
        raise ProtocolError(f"{where} is not a list of rules")
    return tuple(_rule(item, f"{where} rule {i + 1}", attributes) for i, item in enumerate(data))


def _rule(data: Any, where: str, attributes: Mapping[str, Any], inner: bool = False) -> Rule:
    scoring = set() if inner else {"weight", "required"}
    if isinstance(data, dict) and "any" in data:
        _keys(data, where, {"any", "not"} | scoring)
        parts = data["any"]
        if not isinstance(parts, list) or not parts:
            raise ProtocolError(f"{where}: any must be a list of rules")
        rules = tuple(_rule(p, f"{where} any {i + 1}", attributes, inner=True) for i, p in enumerate(parts))
        return Rule(any=rules, negate=_flag(data, "not", where), **_scoring(data, where))
    _keys(data, where, {"attribute", "not", *_OPERATORS} | scoring)
    attribute = data.get("attribute")
    if attribute not in attributes:
        raise ProtocolError(f"{where}: unknown attribute {attribute!r} (known: {', '.join(attributes)})")
    kind = attributes[attribute] if isinstance(attributes[attribute], str) else attributes[attribute][0]
    operators = [op for op in _OPERATORS if op in data]
    if len(operators) != 1:
        raise ProtocolError(f"{where}: give one of {', '.join(_OPERATORS_OF[kind])} for {attribute}")
    op = operators[0]
    if op not in _OPERATORS_OF[kind]:
        raise ProtocolError(f"{where}: {attribute} takes {', '.join(_OPERATORS_OF[kind])}, not {op}")
    value = _operand(data[op], op, kind, f"{where} ({attribute} {op})")
    return Rule(attribute, op, value, negate=_flag(data, "not", where), **_scoring(data, where))


def _operand(value: Any, op: str, kind: str, where: str) -> Any:
    if op == "in":
        if not isinstance(value, list) or not value:
            raise ProtocolError(f"{where}: expects a list of values")
        return tuple(_operand(v, "equals", kind, where) for v in value)
    if kind == FLAG:
        if not isinstance(value, bool):
            raise ProtocolError(f"{where}: expects true or false")
        return value
    if kind == NUMBER:
        if not _is_number(value) or not math.isfinite(value):
            raise ProtocolError(f"{where}: expects a number, not {value!r}")
        return value
    if not isinstance(value, str):
        raise ProtocolError(f"{where}: expects text, not {value!r}")
    if op == "matches":
        try:
            re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise ProtocolError(f"{where}: {value!r} is not a regular expression ({exc})") from None
    return value


def _flag(data: dict, key: str, where: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ProtocolError(f"{where}: {key} must be true or false")
    return value


def _scoring(data: dict, where: str) -> dict:
    weight = data.get("weight", 1)
    if not _is_number(weight) or not math.isfinite(weight):
        raise ProtocolError(f"{where}: weight must be a number")
    return {"weight": float(weight), "required": _flag(data, "required", where)}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(value, bool):
        return value is wanted
    if isinstance(wanted, str):
        return isinstance(value, str) and value.strip().casefold() == wanted.strip().casefold()
    return _is_number(value) and value == wanted


