"""Display sets: what a viewport scrolls through, one entry per frame.

A series of single-frame instances and a multi-frame instance both become a flat list of
frames, so the viewer needs one code path for a CT stack and an ultrasound cine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workstation.core.model.records import Instance, Series, Study


@dataclass(frozen=True, slots=True)
class FrameRef:
    path: str
    frame: int
    SOPInstanceUID: str


@dataclass(frozen=True)
class DisplaySet:
    series: Series
    study: Study | None
    frames: tuple[FrameRef, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return self.series.SeriesInstanceUID

    def __len__(self) -> int:
        return len(self.frames)


def display_set_for(series: Series, instances: list[Instance], study: Study | None = None) -> DisplaySet:
    """Frames in instance order (the cache orders by InstanceNumber), each instance's frames in turn."""
    frames = tuple(
        FrameRef(inst.path, i, inst.SOPInstanceUID)
        for inst in instances
        for i in range(max(1, inst.NumberOfFrames or 1))
    )
    return DisplaySet(series=series, study=study, frames=frames)
