"""What a viewer tab offers the film composer: its images as print items, each as its viewport shows
it (window, rotation, flips): the current image, the study's key images, every Nth image of the
active series, the current layout. The 2D viewports' images: an MPR plane is printed once saved as
DICOM (it is a series of the study then)."""

from __future__ import annotations

from workstation.core.film_composer import every_nth, item_of
from workstation.core.printing import PrintItem


def series_name(ds) -> str:
    """'Se 3' and the series description, as the composer lists an image's series."""
    if ds is None:
        return ""
    number = ds.series.SeriesNumber
    return " ".join(p for p in (f"Se {number}" if number is not None else "", ds.description or "") if p)


def _as_shown(model, ref) -> PrintItem:
    view = model.view
    return item_of(ref, model.shown_window(), view.rotation, view.flip_horizontal, view.flip_vertical,
                   series_name(model.display_set), view.invert)


class ViewerPrintSource:
    def __init__(self, viewer) -> None:
        self.viewer = viewer

    @property
    def model(self):
        return self.viewer.session.layout.current

    def print_items(self, what: str) -> list[PrintItem]:
        session = self.viewer.session
        if what == "current":
            model = self.model
            return [_as_shown(model, model.current)] if model is not None and model.current is not None else []
        if what == "layout":
            return [_as_shown(m, m.current) for m in session.layout.viewports if m.current is not None]
        if what == "keys":
            out = []
            shown = {m.display_set.key: m for m in session.layout.viewports if m.display_set is not None}
            for study in session.studies:
                keys = session.key_images.get(study.StudyInstanceUID, frozenset())
                for ds in study.display_sets:
                    model = shown.get(ds.key)
                    for ref in ds.frames:
                        if (ref.SOPInstanceUID, ref.frame) in keys:
                            out.append(_as_shown(model, ref) if model is not None
                                       else item_of(ref, series=series_name(ds)))
            return out
        raise ValueError(f"unknown source {what!r}")

    def series_items(self, study_uid: str, key: str) -> list[PrintItem]:
        """Every image of a display set dragged from the strip, in the window of a viewport showing it."""
        session = self.viewer.session
        for study in session.studies:
            if study.StudyInstanceUID == study_uid and (ds := study.find(key)) is not None:
                model = next((m for m in session.layout.viewports if m.display_set is not None
                              and m.display_set.key == key), None)
                if model is not None:
                    return [_as_shown(model, ref) for ref in ds.frames]
                return [item_of(ref, series=series_name(ds)) for ref in ds.frames]
        return []

    def series_length(self) -> int:
        model = self.model
        return len(model.frames) if model is not None and model.display_set is not None else 0

    def print_range(self, first: int, last: int, step: int) -> list[PrintItem]:
        model = self.model
        view = model.view
        return every_nth(model.frames, first, last, step, model.shown_window(), view.rotation, view.flip_horizontal,
                         view.flip_vertical, series_name(model.display_set), view.invert)
