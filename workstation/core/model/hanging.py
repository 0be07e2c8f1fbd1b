"""Hanging protocols: rules kept as data choose the layout and which display set goes where.

A protocol (resources/hanging_protocols/*.json, the user's in HOME/hanging_protocols/; the format
is in resources/hanging_protocols/README.md) has match rules on the study, one layout and a
display-set selector per viewport, as OHIF's protocols do: required rules must pass, the weights
of the rules that pass add up, the best-scoring protocol wins, and a study that none matches gets
a default of its largest stacks. Qt-free: the viewer calls `choose` and shows what it says.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from workstation.core.model.display_set import DisplaySet
from workstation.core.model.protocols import (  # noqa: F401 - the format's names are part of this module's interface
    _SET_ATTRIBUTES,
    DEFAULT,
    FLAG,
    FOLDER,
    FORMAT,
    MAX_SIDE,
    NUMBER,
    SHIPPED,
    TEXT,
    Protocol,
    ProtocolError,
    Rule,
    Viewport,
    _is_number,
)
from workstation.core.model.records import Study

log = logging.getLogger(__name__)

# --- reading and saving protocol files ---------------------------------------------------------


def load_protocols(home: Path | None = None) -> list[Protocol]:
    """The shipped protocols, then the user's from HOME/hanging_protocols/ (none without a home); a
    user protocol with the name (ignoring case) of a shipped one replaces it. A file that cannot be
    used is skipped with a warning in the log naming it and why."""
    shipped = _read_folder(SHIPPED, "shipped")
    user = _read_folder(Path(home) / FOLDER, "user") if home is not None else []
    replaced = {p.name.casefold() for p in user}
    return [p for p in shipped if p.name.casefold() not in replaced] + user


def _read_folder(folder: Path, source: str) -> list[Protocol]:
    if not folder.is_dir():
        return []
    found: dict[str, Protocol] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            protocol = Protocol.from_json(json.loads(path.read_text(encoding="utf-8")), source, path)
        except Exception as exc:   # a user's file, however broken, must not stop a study opening
            log.warning("hanging protocol file %s skipped: %s", path, exc)
            continue
        earlier = found.get(protocol.name.casefold())
        if earlier is not None:
            log.warning("hanging protocol file %s skipped: %s has the same name, %r", earlier.path, path,
                        protocol.name)
        found[protocol.name.casefold()] = protocol
    return list(found.values())


def save_protocol(home: Path, protocol: Protocol) -> Path:
    """Write a protocol into HOME/hanging_protocols/ (replacing the user's protocol of that name);
    returns its file. The write is atomic: a crash leaves the old file or the new one. ProtocolError
    (before anything is written) when the protocol would not load again, e.g. an option that is a list."""
    Protocol.from_json(protocol.to_json())
    folder = Path(home) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = _file_for(folder, protocol.name)
    text = json.dumps(protocol.to_json(), indent=2, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".protocol-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _file_for(folder: Path, name: str) -> Path:
    """The file of the user's protocol of that name, else a free file named after it."""
    for path in folder.glob("*.json"):
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("name", "").strip().casefold() == name.casefold():
                return path
        except (OSError, ValueError, AttributeError):
            continue
    stem = re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-") or "protocol"
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.json"
    return path


# --- choosing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyInput:
    """A study as `choose` sees it: its record (None when unknown) and its display sets so far (none
    when it is only known from a PACS)."""

    study: Study | None
    display_sets: tuple[DisplaySet, ...] = ()
    StudyInstanceUID: str = ""
    """Only needed when there is neither a record nor a display set to tell it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "display_sets", tuple(self.display_sets))

    @classmethod
    def of(cls, sets: Any) -> StudyInput:
        """From the study loader's StudySets (its .study, .display_sets and .StudyInstanceUID)."""
        return cls(sets.study, tuple(sets.display_sets), sets.StudyInstanceUID)

    @property
    def uid(self) -> str:
        if self.study is not None and self.study.StudyInstanceUID:
            return self.study.StudyInstanceUID
        return self.StudyInstanceUID or next((d.StudyInstanceUID for d in self.display_sets), "")


class CellRef(NamedTuple):
    """What one cell shows: a display set of a study."""

    StudyInstanceUID: str
    key: str


@dataclass(frozen=True)
class Arrangement:
    protocol: str
    """The name of the protocol chosen, or DEFAULT."""
    rows: int
    columns: int
    cells: tuple[CellRef | None, ...]
    """rows x columns, row by row; None is an empty cell."""
    options: tuple[Mapping[str, Any], ...]
    """Per cell, what the protocol says of it (e.g. window: a preset name, link: a group name); {} when nothing."""
    needs_prior: str | None = None
    """The StudyInstanceUID of the prior the protocol shows but whose display sets are not here yet:
    retrieve it and choose again."""
    prior: str | None = None
    """The StudyInstanceUID of the prior the protocol compares with, when it asks for one."""


def choose(protocols: Iterable[Protocol], current: StudyInput, priors: Sequence[StudyInput] = ()) -> Arrangement:
    """The arrangement of the best-scoring protocol whose required rules pass on the current study,
    else the default arrangement. A user's protocol that matches beats the shipped ones (the user
    made it for such studies, and a saved arrangement must open the same way again); ties go to the
    earlier in the list."""
    best: tuple[tuple, Protocol, StudyInput | None] | None = None
    for index, protocol in enumerate(protocols):
        prior = most_recent_prior(current, priors, protocol.prior)
        score = _score(protocol.match, _study_values(current, prior is not None))
        if score is None:
            continue
        rank = (protocol.source == "user", score, -index)
        if best is None or rank > best[0]:
            best = (rank, protocol, prior)
    if best is None:
        return default_arrangement(current)
    return _arrange(best[1], current, best[2])


def most_recent_prior(current: StudyInput, priors: Iterable[StudyInput],
                      rules: Sequence[Rule] = ()) -> StudyInput | None:
    """The latest study of the same patient before the current one (by StudyDate, then StudyTime when
    both have one) that passes every rule; studies without a date are never priors."""
    now = _when(current.study)
    if now is None:
        return None
    patient = current.study.PatientID.strip()
    best, best_when = None, None
    for item in priors:
        when = _when(item.study)
        if when is None or item.uid == current.uid:
            continue
        other = item.study.PatientID.strip()
        if patient and other and other != patient:
            continue
        earlier = when[0] < now[0] or when[0] == now[0] and bool(when[1] and now[1]) and when[1] < now[1]
        if not earlier or not all(rule.passes(_study_values(item, False)) for rule in rules):
            continue
        if best_when is None or when > best_when:
            best, best_when = item, when
    return best


def _when(study: Study | None) -> tuple[str, str] | None:
    if study is None:
        return None
    date = study.StudyDate.strip().replace(".", "")   # ACR-NEMA wrote YYYY.MM.DD
    if len(date) != 8 or not date.isdigit():
        return None
    whole, _, fraction = study.StudyTime.strip().replace(":", "").partition(".")
    time = (whole + "000000")[:6] + "." + (fraction + "000000")[:6] if whole.isdigit() else ""
    return date, time


def default_arrangement(current: StudyInput) -> Arrangement:
    """One viewport per display set that is not a localizer, up to 2x2 (1: 1x1, 2: 1x2, 3-4: 2x2), the
    largest stacks first and localizers last; a study of localizers only shows them."""
    ordered = default_order(current.display_sets)
    count = sum(not d.is_localizer for d in ordered) or len(ordered)
    rows, columns = ((1, 1), (1, 1), (1, 2))[count] if count < 3 else (2, 2)
    cells = [CellRef(current.uid, d.key) for d in ordered[:rows * columns]]
    cells += [None] * (rows * columns - len(cells))
    return Arrangement(DEFAULT, rows, columns, tuple(cells), tuple({} for _ in cells))


def default_order(display_sets: Iterable[DisplaySet]) -> list[DisplaySet]:
    """Localizers last, then more frames first, then lower SeriesNumber (none last), then as given."""
    return [d for _, d in sorted(enumerate(display_sets), key=lambda item: (_tie(item[1]), item[0]))]


def _tie(d: DisplaySet) -> tuple:
    number = d.series.SeriesNumber
    return d.is_localizer, -len(d), number is None, number or 0


def _score(rules: Sequence[Rule], values: Callable[[str], Sequence[Any]]) -> float | None:
    """The weights of the rules that pass, or None when a required one fails."""
    total = 0.0
    for rule in rules:
        if rule.passes(values):
            total += rule.weight
        elif rule.required:
            return None
    return total


def _study_values(item: StudyInput, has_prior: bool) -> Callable[[str], Sequence[Any]]:
    study, sets = item.study, item.display_sets

    def values(attribute: str) -> Sequence[Any]:
        if attribute == "Modality":
            found = {m for m in (study.ModalitiesInStudy if study else ()) if m}
            found |= {d.series.Modality for d in sets if d.series.Modality}
            return sorted(found) or [""]
        if attribute == "BodyPartExamined":
            # Scouts often leave it empty: the study's body part is what its series say, "" if none does.
            return sorted({d.series.BodyPartExamined for d in sets if d.series.BodyPartExamined}) or [""]
        if attribute == "StudyDescription":
            return [study.StudyDescription if study else ""]
        if attribute == "NumberOfSeries":
            return [len({d.SeriesInstanceUID for d in sets})]
        if attribute == "NumberOfDisplaySets":
            return [len(sets)]
        if attribute == "has_prior":
            return [has_prior]
        get = _SET_ATTRIBUTES[attribute][1]
        return [get(d) for d in sets]

    return values


def _set_values(d: DisplaySet) -> Callable[[str], Sequence[Any]]:
    return lambda attribute: [_SET_ATTRIBUTES[attribute][1](d)]


def _arrange(protocol: Protocol, current: StudyInput, prior: StudyInput | None) -> Arrangement:
    studies = {"current": current, "prior": prior}
    size = protocol.rows * protocol.columns
    cells: list[CellRef | None] = [None] * size
    options: list[Mapping[str, Any]] = [{} for _ in range(size)]
    placed: set[CellRef] = set()
    unfound: list[int] = []
    needs_prior = None
    for i, viewport in enumerate(protocol.viewports):
        if viewport is None:
            continue
        options[i] = dict(viewport.options)
        source = studies[viewport.study]
        if source is None:
            continue
        if viewport.study == "prior" and not source.display_sets:
            needs_prior = source.uid
            continue
        chosen = _select(viewport, source, placed)
        if chosen is None:
            unfound.append(i)
        else:
            cells[i] = chosen
            placed.add(chosen)
    # Viewports whose selector found nothing take what is left of their own study, best first: a
    # prior's cell never shows the current study, where a reader would take it for the prior.
    for i in unfound:
        source = studies[protocol.viewports[i].study]
        for d in default_order(source.display_sets):
            ref = CellRef(source.uid, d.key)
            if ref not in placed:
                cells[i] = ref
                placed.add(ref)
                break
    return Arrangement(protocol.name, protocol.rows, protocol.columns, tuple(cells), tuple(options),
                       needs_prior, prior.uid if prior is not None else None)


def _select(viewport: Viewport, source: StudyInput, placed: set[CellRef]) -> CellRef | None:
    """The best-scoring display set for a viewport (ties as default_order), None when none passes.
    A selector that does not ask about is_localizer never takes a localizer."""
    asks_localizer = any(rule.attribute == "is_localizer" for rule in viewport.select)
    best: tuple[tuple, CellRef] | None = None
    for index, d in enumerate(source.display_sets):
        ref = CellRef(source.uid, d.key)
        if ref in placed and not viewport.repeat or d.is_localizer and not asks_localizer:
            continue
        score = _score(viewport.select, _set_values(d))
        if score is None:
            continue
        rank = (-score, _tie(d), index)
        if best is None or rank < best[0]:
            best = (rank, ref)
    return best[1] if best is not None else None


# --- the user's arrangement as a protocol ------------------------------------------------------


def protocol_from_arrangement(name: str, current: StudyInput, priors: Sequence[StudyInput], rows: int,
                              columns: int, cells: Sequence[tuple[str, str] | None],
                              options: Sequence[Mapping[str, Any] | None] | None = None,
                              description: str = "") -> Protocol:
    """A protocol that opens the next study of this kind as the user has this one on screen: per cell a
    selector describing the display set shown (modality, a pattern of its description, orientation,
    localizer or not, laterality and view, from the current study or the prior), and match rules from
    the current study (its modalities and body part, one of its series shown). ValueError when a cell
    names a display set not given, or more than one prior, or a prior that is not earlier."""
    name = name.strip()
    if not name:
        raise ValueError("a protocol needs a name")
    if len(cells) != rows * columns or not (1 <= rows <= MAX_SIDE and 1 <= columns <= MAX_SIDE):
        raise ValueError(f"a {rows}x{columns} layout needs {rows * columns} cells, not {len(cells)}")
    if options is not None and len(options) != len(cells):
        raise ValueError("options must have one entry per cell")
    studies = {p.uid: p for p in priors}
    viewports: list[Viewport | None] = []
    shown: set[CellRef] = set()
    used_prior: StudyInput | None = None
    current_sets: list[DisplaySet] = []
    prior_sets: list[DisplaySet] = []
    for i, cell in enumerate(cells):
        if cell is None:
            viewports.append(None)
            continue
        ref = CellRef(*cell)
        source = current if ref.StudyInstanceUID == current.uid else studies.get(ref.StudyInstanceUID)
        if source is None:
            raise ValueError(f"cell {i + 1} shows study {ref.StudyInstanceUID}, which is neither the current study nor a prior given")
        if source is not current:
            if used_prior is not None and used_prior is not source:
                raise ValueError("a protocol compares with one prior (the most recent); the cells show two")
            if most_recent_prior(current, [source]) is None:
                raise ValueError(f"study {source.uid} is not an earlier study of this patient")
            used_prior = source
        d = next((d for d in source.display_sets if d.key == ref.key), None)
        if d is None:
            raise ValueError(f"cell {i + 1} shows display set {ref.key}, which study {ref.StudyInstanceUID} does not have")
        (current_sets if source is current else prior_sets).append(d)
        viewports.append(Viewport("current" if source is current else "prior", _describe(d), ref in shown,
                                  dict(options[i] or {}) if options is not None else {}))
        shown.add(ref)
    match = _study_rules(current, current_sets)
    prior_rules: tuple[Rule, ...] = ()
    if used_prior is not None:
        match += (Rule("has_prior", "equals", True, required=True),)
        modalities = sorted({d.series.Modality for d in prior_sets if d.series.Modality})
        if modalities:
            prior_rules = (Rule("Modality", "in", tuple(modalities)),)
    return Protocol(name, rows, columns, tuple(viewports), match, prior_rules, description, source="user")


def description_pattern(text: str) -> str:
    """A regular expression matching this series description whatever the case and spacing."""
    words = text.split()
    return r"^\s*" + r"\s+".join(re.escape(w) for w in words) + r"\s*$" if words else r"^\s*$"


def _describe(d: DisplaySet) -> tuple[Rule, ...]:
    rules = []
    if d.series.Modality:
        rules.append(Rule("Modality", "equals", d.series.Modality, required=True))
    rules.append(Rule("SeriesDescription", "matches", description_pattern(d.series.SeriesDescription),
                      weight=4, required=True))
    if d.orientation:
        rules.append(Rule("orientation", "equals", d.orientation, weight=2, required=True))
    rules.append(Rule("is_localizer", "equals", d.is_localizer, required=True))
    for attribute in ("ImageLaterality", "ViewPosition"):
        value = getattr(d, attribute)
        if value:
            rules.append(Rule(attribute, "equals", value, weight=2, required=True))
    if d.label:
        rules.append(Rule("label", "equals", d.label))
    if d.series.SeriesNumber is not None:
        rules.append(Rule("SeriesNumber", "equals", d.series.SeriesNumber))
    return tuple(rules)


def _study_rules(current: StudyInput, shown: list[DisplaySet]) -> tuple[Rule, ...]:
    """Modalities and body part of what is shown (of the whole study when none of it is), one of the
    described series shown being there, and the study description as a bonus."""
    sets = shown or list(current.display_sets)
    rules = []
    modalities = sorted({d.series.Modality for d in sets if d.series.Modality})
    if not modalities and current.study is not None:
        modalities = [m for m in current.study.ModalitiesInStudy if m]
    rules += [Rule("Modality", "equals", m, weight=2, required=True) for m in modalities]
    parts = sorted({d.series.BodyPartExamined for d in sets if d.series.BodyPartExamined})
    if parts:
        rules.append(Rule("BodyPartExamined", "in", tuple(parts), weight=3, required=True))
    patterns = list(dict.fromkeys(description_pattern(d.series.SeriesDescription)
                                  for d in shown if d.series.SeriesDescription.strip()))
    if patterns:
        rules.append(Rule(any=tuple(Rule("SeriesDescription", "matches", p) for p in patterns),
                          weight=2, required=True))
        rules += [Rule("SeriesDescription", "matches", p) for p in patterns]
    if current.study is not None and current.study.StudyDescription.strip():
        rules.append(Rule("StudyDescription", "matches", description_pattern(current.study.StudyDescription)))
    return tuple(rules)
