"""The cache as the window sees it: searches, series lists and imports run on workers."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from workstation.core.cache import Cache, QueryFilter
from workstation.core.key_images import change_key_images, read_key_images, study_instances
from workstation.core.pixels.image import ImageSource
from workstation.core.pixels.render import thumbnail
from workstation.services.jobs import Job, JobRunner


class CacheService(QObject):
    """Owns the `Cache`; every call returns a `Job` whose signals carry the answer."""

    changed = Signal()  # studies were added, replaced or removed

    def __init__(self, cache: Cache, runner: JobRunner) -> None:
        super().__init__()
        self.cache = cache
        self.runner = runner

    def search(self, query: QueryFilter, limit: int | None = 5000, referring: str = "") -> Job:
        """Studies matching `query`; `referring` (a DICOM wildcard pattern, case-insensitive) filters
        on the referring physician, which the cache index does not search itself."""

        def work(progress, cancel):
            if not referring:
                return self.cache.studies(query, limit=limit)
            pattern = referring.casefold()
            return [s for s in self.cache.studies(query)
                    if fnmatch.fnmatchcase(s.ReferringPhysicianName.casefold(), pattern)][:limit]

        return self.runner.submit("search", work)

    def series(self, study_uid: str) -> Job:
        return self.runner.submit("list series", lambda progress, cancel: self.cache.series(study_uid))

    def import_paths(self, paths: list[str | Path]) -> Job:
        def work(progress, cancel):
            return self.cache.import_paths([Path(p) for p in paths], progress=progress, cancel=cancel)

        job = self.runner.submit("import", work)
        job.ended.connect(self.changed)
        return job

    def delete_study(self, study_uid: str) -> Job:
        job = self.runner.submit("delete study", lambda progress, cancel: self.cache.delete(study_uid))
        job.ended.connect(self.changed)
        return job

    def pin_study(self, study_uid: str, pinned: bool) -> Job:
        job = self.runner.submit("pin study", lambda progress, cancel: self.cache.pin(study_uid, pinned))
        job.ended.connect(self.changed)
        return job

    def thumbnail(self, series_uid: str, size: int = 96) -> Job:
        """The middle image of a cached series rendered through the pixel pipeline, as a small
        uint8 array (grey or RGB) no larger than about `size` pixels a side; the widget wraps it."""

        def work(progress, cancel):
            instances = [i for i in self.cache.instances(series_uid) if i.Rows and i.Columns]
            if not instances:   # none here yet, or a series of documents (key images, reports)
                raise LookupError(f"series {series_uid} has no images in the cache")
            return thumbnail(ImageSource.open(instances[len(instances) // 2].path), size)

        return self.runner.submit("thumbnail", work)

    def annotations(self, study_uid: str) -> Job:
        """The saved annotations of a study (JSON documents)."""
        return self.runner.submit("read annotations", lambda progress, cancel: self.cache.annotations(study_uid))

    def save_annotations(self, study_uid: str, documents: list[dict]) -> Job:
        return self.runner.submit("save annotations",
                                  lambda progress, cancel: self.cache.save_annotations(study_uid, documents))

    def key_images(self, study_uid: str) -> Job:
        """The study's key images as the viewer counts them: a frozenset of (SOP Instance UID, frame from 0),
        and the warnings about documents that could not be read."""
        def work(progress, cancel):
            found = read_key_images(self.cache, study_uid)
            return found.frames(study_instances(self.cache, study_uid)), found.warnings

        return self.runner.submit("read key images", work)

    def mark_key_image(self, study_uid: str, sop_uid: str, frame: int, marked: bool) -> Job:
        """Mark or unmark one frame (from 0) as a key image: a new key-image document in the cache.
        Succeeds with the study's key images afterwards, as `key_images` gives them."""
        def work(progress, cancel):
            instances = study_instances(self.cache, study_uid)
            instance = instances.get(sop_uid)
            key = (sop_uid, None if instance is None or instance.NumberOfFrames <= 1 else frame + 1)
            found, _missing = change_key_images(self.cache, study_uid, [key] if marked else [],
                                                [] if marked else [key])
            return found.frames(study_instances(self.cache, study_uid)), found.warnings

        return self.runner.submit("key image", work)

    def volume(self, series_uid: str, part: bool = False) -> Job:
        """A cached series as a volume for MPR: (Volume, the series' own windows). `part`: the largest
        consistent part of a series that is not a volume as a whole. Fails in words (VolumeError)."""
        def work(progress, cancel):
            from workstation.core.pixels.volume import assemble_volume_from_headers
            from workstation.core.pixels.volume_checks import largest_consistent_part

            headers = self.cache.volume_slices(series_uid)
            if part:
                found = largest_consistent_part(headers)
                if found is None:
                    raise LookupError("no part of this series makes a volume")
                headers = list(found.headers)
            volume = assemble_volume_from_headers(headers, progress, cancel)
            windows = ImageSource.open(headers[0].path).windows() if headers else []
            return volume, windows

        return self.runner.submit("volume", work)

    def volume_part(self, series_uid: str) -> Job:
        """What `volume(part=True)` would take, in words ("slices 12-140"), or "" when nothing would do."""
        def work(progress, cancel):
            from workstation.core.pixels.volume_checks import largest_consistent_part

            found = largest_consistent_part(self.cache.volume_slices(series_uid))
            return found.label if found is not None else ""

        return self.runner.submit("volume part", work)

    def frame_thumbnail(self, path: str, frame: int, size: int = 96) -> Job:
        """One frame of a file as a small uint8 array (for a display set's thumbnail)."""
        return self.runner.submit("thumbnail",
                                  lambda progress, cancel: thumbnail(ImageSource.open(path), size, frame))
