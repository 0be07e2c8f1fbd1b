"""A study's key images, read and changed through its Key Object Selection documents in the cache.
The one workflow the window and `workstation keys` both use. Qt-free.

The key images shown are those of the study's newest document of ours, or, when it has none, of the
newest from another system (a PACS) that is not a rejection note. A change writes a new document
of ours, made from the one shown, and replaces our previous one in the same unit; when another
writer changed them in between, the change is made again on what that writer left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pydicom

from workstation.core.cache import Cache, KeyObjectsChanged, QueryFilter
from workstation.core.dicom.key_objects import (
    KEY_OBJECT_SELECTION,
    OF_INTEREST,
    KeyObject,
    KeyReference,
    build_key_object,
    load_key_object,
    merge_references,
    to_part10,
    with_key,
    without_key,
)
from workstation.core.model.records import Instance, KeyObjectInstance

ATTEMPTS = 5
"""Times a change is made again when another writer changed the key images in between."""

Key = tuple[str, int | None]
"""(SOP Instance UID, frame from 1, or None for the whole instance), as the documents say it."""


@dataclass
class KeyImages:
    StudyInstanceUID: str
    documents: list[KeyObjectInstance] = field(default_factory=list)
    shown: KeyObjectInstance | None = None       # the document whose images these are
    document: KeyObject | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def keys(self) -> list[Key]:
        return self.document.keys if self.document is not None else []

    def frames(self, instances: dict[str, Instance]) -> frozenset[tuple[str, int]]:
        """The key images as the viewer counts frames: (SOP Instance UID, frame from 0); a whole
        multi-frame instance is each of its frames."""
        out = set()
        for sop, frame in self.keys:
            if frame is not None:
                out.add((sop, frame - 1))
                continue
            instance = instances.get(sop)
            out.update((sop, i) for i in range(max(1, instance.NumberOfFrames if instance else 1)))
        return frozenset(out)


def read_key_images(cache: Cache, study_uid: str) -> KeyImages:
    """The key images of a study; documents that cannot be read are named in `warnings`."""
    found = KeyImages(study_uid, cache.key_objects(study_uid))
    for d in found.documents:
        if d.problem:
            found.warnings.append(f"key-image document {d.SOPInstanceUID} cannot be read: {d.problem}")
    readable = [d for d in found.documents if not d.problem and not d.rejection_note]
    ours = [d for d in readable if d.ours]
    found.shown = (ours or readable or [None])[0]
    if found.shown is not None:
        try:
            found.document = load_key_object(found.shown.path)
        except ValueError as exc:   # it changed since it was listed
            raise ValueError(f"key-image document {found.shown.SOPInstanceUID} cannot be read: {exc}") from None
        found.warnings += [f"key-image document {found.shown.SOPInstanceUID}: {text}" for text in found.document.warnings]
    return found


def study_instances(cache: Cache, study_uid: str) -> dict[str, Instance]:
    return {i.SOPInstanceUID: i for i in cache.query("instance", QueryFilter(StudyInstanceUID=study_uid))}


def check_addable(instances: dict[str, Instance], study_uid: str, sop: str, frame: int | None) -> None:
    """ValueError in words when (sop, frame) cannot be a key image of the study."""
    instance = instances.get(sop)
    if instance is None:
        raise ValueError(f"no instance {sop} in study {study_uid} in the cache")
    if instance.SOPClassUID == KEY_OBJECT_SELECTION:
        raise ValueError(f"{sop} is a key-image document itself, not an image")
    if frame is not None and frame > instance.NumberOfFrames:
        raise ValueError(f"{sop} has {instance.NumberOfFrames} frame(s), numbered from 1: there is no frame {frame}")


def change_key_images(cache: Cache, study_uid: str, add: list[Key] = (), remove: list[Key] = (),
                      description: str | None = None, creator: str = "") -> tuple[KeyImages, list[Key]]:
    """Mark `add` and unmark `remove` (frames from 1, None for a whole instance); a new description
    alone rewrites the document too. Returns the key images afterwards and the removals that named no
    key image. ValueError in words when it cannot be done (nothing is written then)."""
    instances = study_instances(cache, study_uid)
    for sop, frame in add:
        check_addable(instances, study_uid, sop, frame)
    missing: list[Key] = []
    changed = None
    for attempt in range(ATTEMPTS):
        current = read_key_images(cache, study_uid)
        changed, missing = _change(current.document, instances, add, remove)
        document = current.document
        if changed is None and description is not None and document is not None and description != document.description:
            changed = document.references()   # the same images, described anew
        if changed is None:
            if document is None and not add and description is not None:
                raise ValueError(f"study {study_uid} has no key images to describe: add some first")
            break
        data = _document_bytes(instances, current, changed, description, creator)
        newest_ours = next((d.SOPInstanceUID for d in current.documents if d.ours), None)
        try:
            cache.replace_key_object(study_uid, data, newest_ours)
            break
        except KeyObjectsChanged:
            if attempt == ATTEMPTS - 1:
                raise
    after = read_key_images(cache, study_uid)
    if changed == [] and after.shown is not None:
        after.warnings.append(f"no key images of ours are left; those of {after.shown.Manufacturer or 'another system'}'s "
                              f"document {after.shown.SOPInstanceUID} show again (a document of another system is kept)")
    return after, missing


def _change(document: KeyObject | None, instances: dict[str, Instance], add, remove):
    """The new selection, or None when it is the same; and the removals that named no key image."""
    before = document.references() if document else []
    refs = list(before)
    for sop, frame in add:
        instance = instances[sop]
        frames = None if frame is None or instance.NumberOfFrames <= 1 else (frame,)
        refs = with_key(refs, KeyReference(instance.SOPClassUID, sop, instance.SeriesInstanceUID, frames))
    missing = []
    for sop, frame in remove:
        instance = instances.get(sop)
        frames = instance.NumberOfFrames if instance is not None else 1
        if frame is not None and frames <= 1 and frame == 1:
            frame = None
        refs, removed = without_key(refs, sop, frame, frames)
        if not removed:
            missing.append((sop, frame))
    if merge_references(refs) == merge_references(before):
        return None, missing
    return refs, missing


def _document_bytes(instances: dict[str, Instance], current: KeyImages, refs, description: str | None,
                    creator: str) -> bytes | None:
    shown, document = current.shown, current.document
    if not refs:
        if shown is not None and not shown.ours:
            raise ValueError(f"the key images come from {shown.Manufacturer or 'another system'}'s document "
                             f"{shown.SOPInstanceUID}, which is kept as it is, and a document of ours needs at "
                             "least one image: they cannot all be removed")
        return None
    source = next((i for i in instances.values() if i.Rows and i.Columns), None) or next(iter(instances.values()))
    try:
        study = pydicom.dcmread(source.path, stop_before_pixels=True)
    except Exception as exc:
        raise ValueError(f"cannot read the study's attributes from {source.path}: {exc}") from None
    ours = document is not None and shown.ours
    if description is None:
        description = document.description if document else ""
    try:
        ds = build_key_object(
            study, refs,
            title=document.title_code if ours and document.title_code else OF_INTEREST,
            description=description,
            series_uid=shown.SeriesInstanceUID if ours else None,
            series_number=document.SeriesNumber if ours else None,
            instance_number=(document.InstanceNumber or 0) + 1 if ours else 1,
            content_creator=creator,
        )
    except ValueError as exc:
        raise ValueError(f"cannot make the key-image document: {exc}") from None
    return to_part10(ds)
