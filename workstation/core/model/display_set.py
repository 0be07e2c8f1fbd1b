"""Display sets: what a viewport scrolls through, one entry per frame, each frame with its plane.

A series of single-frame instances and a multi-frame instance both become a flat list of frames,
so the viewer has one code path for a CT stack and an ultrasound cine. A series is split where a
reader expects it: by orientation (a 3-plane localizer becomes three sets), by echo, acquisition or
stack when the same positions repeat, one set per cine loop (a multi-frame instance without
per-frame geometry), by view for projection images; an enhanced multi-frame instance is laid out
from its per-frame functional groups. A stack is ordered by position along its normal, in the
direction its Instance Numbers run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from workstation.core.dicom.geometry import ImagePlane
from workstation.core.dicom.slices import SliceRecord
from workstation.core.model.records import Instance, Series, Study

SAME_ORIENTATION = float(np.cos(np.radians(2.0)))
"""Row and column directions within 2 degrees: one stack (scanners vary IOP in the last digits)."""
SAME_POSITION_MM = 0.01


@dataclass(frozen=True, slots=True)
class FrameRef:
    """One frame of one instance; equal when they name the same frame of the same file."""

    path: str
    frame: int
    SOPInstanceUID: str
    plane: ImagePlane | None = field(default=None, compare=False)
    InstanceNumber: int | None = field(default=None, compare=False)
    SliceThickness: float | None = field(default=None, compare=False)

    @property
    def location(self) -> float | None:
        """The plane's position along its normal (LPS mm), as Slice Location is meant; None without a plane."""
        if self.plane is None:
            return None
        return float(self.plane.position @ self.plane.normal)


@dataclass(frozen=True)
class DisplaySet:
    series: Series
    study: Study | None
    frames: tuple[FrameRef, ...] = ()
    part: str = ""
    """Which part of its series this is ("" when the series is one display set), stable while it grows."""
    label: str = ""
    """The part in words ("axial", "echo 2", "cine 3"); "" for a whole series."""
    orientation: str = ""
    """axial, coronal, sagittal or oblique when every frame has a plane of that orientation; else ""."""
    is_localizer: bool = False
    frame_rate: float | None = None
    FrameOfReferenceUID: str = ""
    ImageLaterality: str = ""
    ViewPosition: str = ""
    is_multiframe: bool = False
    """The frames are one multi-frame instance (a cine loop, an enhanced object)."""

    @property
    def key(self) -> str:
        uid = self.series.SeriesInstanceUID
        return f"{uid}#{self.part}" if self.part else uid

    @property
    def SeriesInstanceUID(self) -> str:
        return self.series.SeriesInstanceUID

    @property
    def StudyInstanceUID(self) -> str:
        return self.series.StudyInstanceUID or (self.study.StudyInstanceUID if self.study else "")

    @property
    def description(self) -> str:
        """The series description, with the part when the series is split."""
        text = self.series.SeriesDescription or self.series.Modality or "Series"
        return f"{text} ({self.label})" if self.label else text

    def __len__(self) -> int:
        return len(self.frames)


# --- building display sets from the index -----------------------------------------------------


@dataclass
class _Frame:
    ref: FrameRef
    instance: Instance
    record: SliceRecord
    order: int              # instance order (InstanceNumber), then frame
    stack: str = ""
    temporal: int | None = None
    image_type: tuple[str, ...] = ()


def build_display_sets(series: Series, items: Iterable[tuple[Instance, SliceRecord | None]],
                       study: Study | None = None) -> list[DisplaySet]:
    """The display sets of one series from its instances (in InstanceNumber order) and their records."""
    cines: list[list[_Frame]] = []
    frames: list[_Frame] = []
    for instance, record in items:
        record = record or _bare_record(instance)
        if not record.is_image:
            continue   # a document (SR, KOS, PR) in the series: nothing to show
        count = max(1, record.NumberOfFrames or 1)
        placed = record.frames is not None
        made = []
        for i in range(count):
            plane = record.plane(i) if placed or count == 1 else None
            ref = FrameRef(instance.path, i, instance.SOPInstanceUID, plane, instance.InstanceNumber,
                           record.SliceThickness)
            placement = record.frames[i] if placed else None
            made.append(_Frame(ref, instance, record, len(frames) + len(made),
                               placement.StackID if placement else "",
                               placement.TemporalPositionIndex if placement else record.TemporalPositionIdentifier,
                               (placement.FrameType if placement and placement.FrameType else record.ImageType)))
        if count > 1 and not placed:
            cines.append(made)       # a cine loop (US, XA, NM): its own display set, frames in order
        else:
            frames.extend(made)

    groups: list[tuple[list[str], list[_Frame]]] = []
    by_orientation = _cluster_orientations(frames)
    for group in by_orientation:
        names = [_orientation_name(group[0].ref.plane)] if len(by_orientation) > 1 else []
        if group[0].ref.plane is None:
            for value, part in _split(group, lambda f: (f.record.ImageLaterality, f.record.ViewPosition)):
                label = " ".join(v for v in value if v)
                groups.append((names + ([label] if label and value != ("", "") else []), part))
            continue
        for label, part in _split_repeated(group):
            groups.append((names + label, _ordered(part)))
    _number_duplicates(groups)

    out = []
    several = len(groups) + len(cines) > 1
    for names, group in groups:
        part = "/".join(names) if several else ""
        out.append(_display_set(series, study, group, part, ", ".join(names) if several else ""))
    for made in cines:
        number = made[0].instance.InstanceNumber
        name = f"cine {number}" if number is not None else f"cine {made[0].instance.SOPInstanceUID[-8:]}"
        part = made[0].instance.SOPInstanceUID if several else ""
        out.append(_display_set(series, study, made, part, name if several else "", multiframe=True))
    return out


def _bare_record(instance: Instance) -> SliceRecord:
    """A record for an instance whose header was not read: its size from the index, no geometry."""
    return SliceRecord(instance.SOPInstanceUID, instance.Rows, instance.Columns, None, None, None,
                       16 if instance.Rows else 0, 16, 0, 1, "", max(1, instance.NumberOfFrames or 1),
                       1.0, 0.0, None, False, False, None, 0)


def _display_set(series: Series, study: Study | None, group: list[_Frame], part: str, label: str,
                 multiframe: bool = False) -> DisplaySet:
    planes = [f.ref.plane for f in group]
    orientation = _orientation_name(planes[0]) if planes and all(p is not None for p in planes) else ""
    records = [f.record for f in group]
    first = records[0]
    return DisplaySet(
        series=series, study=study, frames=tuple(f.ref for f in group), part=part, label=label,
        orientation=orientation,
        is_localizer=all("LOCALIZER" in r.ImageType for r in records),
        frame_rate=first.frame_rate,
        FrameOfReferenceUID=first.FrameOfReferenceUID,
        ImageLaterality=first.ImageLaterality,
        ViewPosition=first.ViewPosition,
        is_multiframe=multiframe or len({f.instance.SOPInstanceUID for f in group}) == 1 and len(group) > 1,
    )


def _cluster_orientations(frames: list[_Frame]) -> list[list[_Frame]]:
    """Frames with the same row and column directions (within 2 degrees) together; frames without a
    plane in one group of their own. Groups come in the order their first frame does."""
    groups: list[list[_Frame]] = []
    keys: list[ImagePlane | None] = []
    for frame in frames:
        plane = frame.ref.plane
        for key, group in zip(keys, groups, strict=True):
            if key is None and plane is None or key is not None and plane is not None and (
                    float(key.row_direction @ plane.row_direction) >= SAME_ORIENTATION
                    and float(key.column_direction @ plane.column_direction) >= SAME_ORIENTATION):
                group.append(frame)
                break
        else:
            keys.append(plane)
            groups.append([frame])
    return groups


def _split(group: list[_Frame], key: Callable[[_Frame], object]) -> list[tuple[object, list[_Frame]]]:
    parts: dict[object, list[_Frame]] = {}
    for frame in group:
        parts.setdefault(key(frame), []).append(frame)
    return list(parts.items())


def _positions(group: list[_Frame]) -> np.ndarray:
    normal = group[0].ref.plane.normal
    return np.array([float(f.ref.plane.position @ normal) for f in group])


def _repeats(group: list[_Frame]) -> bool:
    positions = np.sort(_positions(group))
    return len(positions) > 1 and bool(np.any(np.diff(positions) < SAME_POSITION_MM))


_SPLITS: tuple[tuple[str, Callable[[_Frame], object]], ...] = (
    ("stack", lambda f: f.stack),
    ("echo", lambda f: f.record.EchoNumbers),
    ("type", lambda f: f.image_type[2:]),
    ("acquisition", lambda f: f.record.AcquisitionNumber),
    ("instance", lambda f: f.instance.SOPInstanceUID if f.record.NumberOfFrames > 1 else ""),
)


def _split_repeated(group: list[_Frame]) -> list[tuple[list[str], list[_Frame]]]:
    """Split a stack whose positions repeat by the first attribute that tells the repeats apart
    (stack, echo, image type such as magnitude and phase, acquisition, enhanced instance); a stack
    without repeats stays whole. What still repeats (time points of a dynamic series) stays
    together in instance order."""
    if not _repeats(group):
        return [([], group)]
    for name, key in _SPLITS:
        parts = _split(group, key)
        if len(parts) < 2:
            continue
        labels = _type_labels(parts) if name == "type" else None
        out = []
        for n, (value, part) in enumerate(parts, start=1):
            if labels is not None:
                label = labels[n - 1]
            elif name == "instance":
                number = part[0].instance.InstanceNumber
                label = f"instance {number if number is not None else n}"
            else:
                label = f"{name} {value}"
            out.extend(([label] + sub_label, sub) for sub_label, sub in _split_repeated(part))
        return out
    return [([], group)]


def _type_labels(parts: list[tuple[object, list[_Frame]]]) -> list[str]:
    """Name parts split by image type by the values that differ between them ("m", "field_map")."""
    types = [part[0].image_type for _, part in parts]
    width = max(len(t) for t in types)
    differing = [i for i in range(2, width)
                 if len({t[i] if i < len(t) else "" for t in types}) > 1]
    return [" ".join(t[i] for i in differing if i < len(t)).lower() or "other" for t in types]


def _ordered(group: list[_Frame]) -> list[_Frame]:
    """By position along the normal, in the direction the instance order runs; repeats keep that order."""
    if _repeats(group):
        return sorted(group, key=lambda f: f.order)
    positions = _positions(group)
    order = np.array([f.order for f in group], float)
    ascending = True
    if np.ptp(order) > 0 and np.ptp(positions) > 0:
        ascending = bool(np.corrcoef(positions, order)[0, 1] >= 0)
    ranked = sorted(range(len(group)), key=lambda i: (positions[i] if ascending else -positions[i], group[i].order))
    return [group[i] for i in ranked]


def _number_duplicates(groups: list[tuple[list[str], list[_Frame]]]) -> None:
    """Two parts with the same name (two oblique stacks, say) are told apart by a number."""
    seen: dict[str, int] = {}
    for names, _ in groups:
        key = "/".join(names)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1 and names:
            names[-1] = f"{names[-1]} {seen[key]}"


def _orientation_name(plane: ImagePlane | None) -> str:
    """axial, coronal or sagittal by the normal's main axis; oblique when no axis is within 37 degrees."""
    if plane is None:
        return "projection"
    normal = np.abs(plane.normal)
    axis = int(np.argmax(normal))
    if normal[axis] < 0.8:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]
