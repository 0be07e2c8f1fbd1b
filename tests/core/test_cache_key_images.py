"""Key-image documents in the cache: listed per study, ours replaced in one unit, others' kept, never taken for images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

from tests.core.test_key_objects import ENHANCED, other_systems_document, reference
from workstation.core.cache import Cache, CacheError, KeyObjectsChanged
from workstation.core.dicom.key_objects import KEY_OBJECT_SELECTION, build_key_object, to_part10


@pytest.fixture
def study(workstation_home, samples):
    """A cache holding the enhanced MR study (4 instances of 6 frames); yields (cache, study UID, headers)."""
    with Cache(workstation_home) as cache:
        report = cache.import_paths([samples / ENHANCED])
        assert report.imported == 4
        uid = report.study_uids[0]
        images = [pydicom.dcmread(i.path, stop_before_pixels=True)
                  for se in cache.series(uid) for i in cache.instances(se.SeriesInstanceUID)]
        yield cache, uid, images


def ours(images, *refs, **kw) -> bytes:
    return to_part10(build_key_object(images[0], list(refs), **kw))


def state(cache: Cache, uid: str) -> tuple:
    """What a failed change must leave as it was: the study's instance rows and the files on disk."""
    rows = sorted((i.SOPInstanceUID, i.path) for i in cache.query("instance") if i.StudyInstanceUID == uid)
    on_disk = sorted(str(p) for p in (cache.files).rglob("*") if p.is_file())
    return rows, on_disk


def test_a_key_object_series_reads_as_ko_without_pixels_beside_the_images(study):
    cache, uid, images = study
    image_series = cache.series(uid)
    stored = cache.replace_key_object(uid, ours(images, reference(images[0]), reference(images[1], (3,))), None)
    assert stored.ours and stored.images == 2 and stored.title == "Of Interest" and stored.problem == ""
    series = cache.series(uid)
    assert series[:len(image_series)] == image_series, "the image series are as they were"
    (ko,) = [s for s in series if s.SeriesInstanceUID == stored.SeriesInstanceUID]
    assert (ko.Modality, ko.SeriesNumber, ko.SeriesDescription, ko.NumberOfSeriesRelatedInstances) == (
        "KO", 999, "Key images", 1)
    (instance,) = cache.instances(ko.SeriesInstanceUID)
    assert instance.SOPClassUID == KEY_OBJECT_SELECTION
    assert (instance.Rows, instance.Columns, instance.NumberOfFrames) == (0, 0, 1), "no pixels"
    (slice_,) = cache.volume_slices(ko.SeriesInstanceUID)
    assert slice_.record.Rows is None and slice_.record.BitsAllocated == 0 and slice_.record.pixel_offset is None
    assert slice_.plane is None
    (row,) = cache.studies()
    assert "KO" in row.ModalitiesInStudy and row.NumberOfStudyRelatedInstances == 5
    assert cache.verify().ok


def test_a_new_document_of_ours_replaces_the_last_and_others_stay(study, samples, tmp_path):
    cache, uid, images = study
    pacs, _ = other_systems_document(samples, tmp_path)
    assert cache.ingest_file(pacs) == "imported"
    (theirs,) = cache.key_objects(uid)
    assert not theirs.ours and theirs.Manufacturer == "ACME PACS" and theirs.title == "For Teaching"
    first = cache.replace_key_object(uid, ours(images, reference(images[0])), None)
    second = cache.replace_key_object(
        uid, ours(images, reference(images[0]), reference(images[2]), series_uid=first.SeriesInstanceUID,
                  instance_number=2), first.SOPInstanceUID)
    listed = cache.key_objects(uid)
    assert [k.SOPInstanceUID for k in listed] == [second.SOPInstanceUID, theirs.SOPInstanceUID], "newest first"
    assert not Path(first.path).exists() and cache.instance_path(first.SOPInstanceUID) is None
    assert Path(theirs.path).exists()
    (ko_series,) = [s for s in cache.series(uid) if s.SeriesInstanceUID == first.SeriesInstanceUID]
    assert ko_series.NumberOfSeriesRelatedInstances == 1
    assert cache.verify().ok
    cache.replace_key_object(uid, None, second.SOPInstanceUID)  # no key images of ours left
    assert [k.SOPInstanceUID for k in cache.key_objects(uid)] == [theirs.SOPInstanceUID]
    assert not [s for s in cache.series(uid) if s.SeriesInstanceUID == first.SeriesInstanceUID]
    assert cache.verify().ok


def test_a_change_made_from_a_document_replaced_meanwhile_is_refused_and_writes_nothing(study):
    cache, uid, images = study
    first = cache.replace_key_object(uid, ours(images, reference(images[0])), None)
    before = state(cache, uid)
    with pytest.raises(KeyObjectsChanged, match="were changed meanwhile .* read them again"):
        cache.replace_key_object(uid, ours(images, reference(images[1])), None)  # it did not know of `first`
    second = cache.replace_key_object(uid, ours(images, reference(images[1])), first.SOPInstanceUID)
    after = state(cache, uid)
    with pytest.raises(KeyObjectsChanged, match=f"it now has document {second.SOPInstanceUID}"):
        cache.replace_key_object(uid, ours(images, reference(images[2])), first.SOPInstanceUID)
    assert state(cache, uid) == after != before
    assert [k.SOPInstanceUID for k in cache.key_objects(uid)] == [second.SOPInstanceUID]


def test_what_is_not_a_key_image_document_of_ours_for_this_study_is_refused(study, samples, tmp_path):
    cache, uid, images = study
    before = state(cache, uid)
    with pytest.raises(CacheError, match="belongs to study .*, not 1.2.3"):
        cache.replace_key_object("1.2.3", ours(images, reference(images[0])), None)
    with pytest.raises(CacheError, match="is not a Key Object Selection document"):
        cache.replace_key_object(uid, Path(images[0].filename).read_bytes(), None)
    pacs, _ = other_systems_document(samples, tmp_path)
    with pytest.raises(CacheError, match="was not made by this workstation .*'ACME PACS'"):
        cache.replace_key_object(uid, pacs.read_bytes(), None)
    assert state(cache, uid) == before


def test_a_stored_document_that_cannot_be_read_is_listed_with_the_reason(study):
    cache, uid, images = study
    ds = build_key_object(images[0], [reference(images[0])])
    del ds.ContentSequence
    assert cache.ingest_bytes(to_part10(ds)) == "imported", "the cache takes it as any instance"
    (listed,) = cache.key_objects(uid)
    assert listed.problem == "it has no content (Content Sequence missing or empty), so no key images"
    assert not listed.ours, "nothing can be told of it, so it is not replaced as ours"
    cache.replace_key_object(uid, ours(images, reference(images[0])), None)
    assert len(cache.key_objects(uid)) == 2


def test_a_document_left_behind_by_a_crash_is_superseded_and_removed_by_the_next_change(study, tmp_path):
    """The old file is unlinked only after the unit commits; if the process dies in between, verify indexes
    it again: the newer document still wins, and the next change removes both."""
    cache, uid, images = study
    first = cache.replace_key_object(uid, ours(images, reference(images[0])), None)
    kept = tmp_path / "left-behind.dcm"
    shutil.copy(first.path, kept)
    second = cache.replace_key_object(uid, ours(images, reference(images[1])), first.SOPInstanceUID)
    shutil.copy(kept, first.path)  # as if the process had died before unlinking it
    report = cache.verify(repair=True)
    assert report.orphan_files == 1 and report.ok
    assert [k.SOPInstanceUID for k in cache.key_objects(uid)] == [second.SOPInstanceUID, first.SOPInstanceUID]
    third = cache.replace_key_object(uid, ours(images, reference(images[2])), second.SOPInstanceUID)
    assert [k.SOPInstanceUID for k in cache.key_objects(uid)] == [third.SOPInstanceUID]
    assert cache.verify().ok
