"""The local cache on small generated instances: ingest, duplicates, unsafe UIDs, search, eviction, verify, threads."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from workstation.core.cache import Cache, CacheError, QueryFilter
from workstation.core.cache.files import relative_path

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def make_dicom(
    study: str = "1.2.3",
    series: str = "1.2.3.1",
    sop: str = "1.2.3.1.1",
    *,
    name: str = "DOE^JOHN",
    patient_id: str = "P1",
    modality: str = "CT",
    date: str = "20200101",
    description: str = "",
    accession: str = "",
    series_number: int | None = 1,
    instance_number: int | None = 1,
    pixel: int = 0,
    rows: int = 4,
    pixel_bytes: int | None = None,
    meta: bool = True,
    charset: str | None = None,
) -> bytes:
    """A small but complete CT instance as Part-10 bytes (or a bare implicit-VR data set with meta=False)."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CT_STORAGE
    ds.SOPInstanceUID = sop
    ds.StudyDate = date
    ds.StudyTime = "120000"
    ds.AccessionNumber = accession
    ds.Modality = modality
    ds.StudyDescription = description
    ds.SeriesDescription = f"series {series_number}"
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "1"
    if series_number is not None:
        ds.SeriesNumber = series_number
    if instance_number is not None:
        ds.InstanceNumber = instance_number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = rows
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    n = rows * rows * 2 if pixel_bytes is None else pixel_bytes
    ds.PixelData = bytes([pixel % 256]) * n
    buf = io.BytesIO()
    if meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CT_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    else:
        pydicom.dcmwrite(buf, ds, implicit_vr=True, little_endian=True)
    return buf.getvalue()


@pytest.fixture
def cache(workstation_home):
    with Cache(workstation_home) as c:
        yield c


def cache_files(home: Path) -> set[str]:
    root = home / "cache" / "files"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- ingest


def test_ingest_builds_the_hierarchy_with_counts_and_order(cache, workstation_home):
    assert cache.ingest_bytes(make_dicom(sop="1.2.3.1.2", instance_number=2)) == "imported"
    assert cache.ingest_bytes(make_dicom(sop="1.2.3.1.1", instance_number=1)) == "imported"
    assert cache.ingest_bytes(make_dicom(series="1.2.3.9", sop="1.2.3.9.1", modality="mr", series_number=9)) == "imported"
    assert cache.ingest_bytes(make_dicom(series="1.2.3.5", sop="1.2.3.5.1", modality="SR", series_number=5)) == "imported"

    (study,) = cache.studies()
    assert study.StudyInstanceUID == "1.2.3"
    assert study.PatientName == "DOE^JOHN" and study.PatientID == "P1" and study.PatientBirthDate == "19700101"
    assert study.ModalitiesInStudy == ("CT", "MR", "SR")
    assert study.NumberOfStudyRelatedSeries == 3
    assert study.NumberOfStudyRelatedInstances == 4
    assert study.size_bytes == sum(p.stat().st_size for p in (workstation_home / "cache" / "files").rglob("*.dcm"))
    assert [s.SeriesNumber for s in cache.series("1.2.3")] == [1, 5, 9]
    assert cache.series("1.2.3")[0].NumberOfSeriesRelatedInstances == 2

    instances = cache.instances("1.2.3.1")
    assert [i.InstanceNumber for i in instances] == [1, 2]
    first = instances[0]
    assert Path(first.path).is_absolute() and Path(first.path).is_file()
    assert Path(first.path).read_bytes() == make_dicom(sop="1.2.3.1.1", instance_number=1)
    assert first.Rows == 4 and first.Columns == 4 and first.NumberOfFrames == 1
    assert first.TransferSyntaxUID == ExplicitVRLittleEndian and first.SOPClassUID == CT_STORAGE
    assert cache.instance_path("1.2.3.1.1") == Path(first.path)
    assert cache.instance_path("9.9") is None
    assert cache.has_instances(["1.2.3.1.1", "1.2.3.5.1", "7.7.7"]) == {"1.2.3.1.1", "1.2.3.5.1"}
    assert cache.size_bytes() == study.size_bytes


def test_file_names_come_from_uid_hashes(cache, workstation_home):
    cache.ingest_bytes(make_dicom())
    assert cache_files(workstation_home) == {relative_path("1.2.3", "1.2.3.1", "1.2.3.1.1")}
    assert "1.2.3" not in next(iter(cache_files(workstation_home)))


def test_ingest_file_and_index_survive_reopen(workstation_home, tmp_path):
    src = tmp_path / "a.dcm"
    src.write_bytes(make_dicom())
    with Cache(workstation_home) as c:
        assert c.ingest_file(src) == "imported"
    with Cache(workstation_home) as c:
        assert [s.StudyInstanceUID for s in c.studies()] == ["1.2.3"]
        assert c.ingest_file(src) == "duplicate"


def test_duplicate_same_content_is_skipped(cache, workstation_home):
    data = make_dicom()
    assert cache.ingest_bytes(data) == "imported"
    before = cache_files(workstation_home)
    assert cache.ingest_bytes(data) == "duplicate"
    assert cache_files(workstation_home) == before
    assert cache.studies()[0].NumberOfStudyRelatedInstances == 1


def test_ingest_many_stores_a_batch_with_each_outcome(cache, workstation_home):
    first, second = make_dicom(sop="1.2.3.1.1"), make_dicom(sop="1.2.3.1.2", instance_number=2)
    newer_first = make_dicom(sop="1.2.3.1.1", pixel=9)
    outcomes = cache.ingest_many([first, second, first, b"not dicom", newer_first])
    assert outcomes[:3] == ["imported", "imported", "duplicate"]
    assert isinstance(outcomes[3], CacheError)
    assert outcomes[4] == "replaced"
    assert [Path(i.path).read_bytes() for i in cache.instances("1.2.3.1")] == [newer_first, second]
    assert cache.studies()[0].NumberOfStudyRelatedInstances == 2
    assert cache.verify().ok


def test_duplicate_with_different_content_replaces(cache):
    cache.ingest_bytes(make_dicom(pixel=1))
    cache.pin("1.2.3")
    newer = make_dicom(pixel=2, rows=8)
    assert cache.ingest_bytes(newer) == "replaced"
    (inst,) = cache.instances("1.2.3.1")
    assert Path(inst.path).read_bytes() == newer
    assert inst.Rows == 8
    (study,) = cache.studies()
    assert study.NumberOfStudyRelatedInstances == 1
    assert study.size_bytes == len(newer)
    assert study.pinned, "replacing an instance keeps the study's pin"


def test_import_report_counts_duplicates_and_replacements(cache, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(make_dicom(pixel=1))
    (folder / "b.dcm").write_bytes(make_dicom(pixel=1))
    (folder / "c.dcm").write_bytes(make_dicom(pixel=3))
    (folder / "d.dcm").write_bytes(make_dicom(sop="1.2.3.1.4", instance_number=4))
    (folder / ".hidden.dcm").write_bytes(make_dicom(sop="1.2.3.1.5"))
    (folder / "notes.txt").write_text("hello")
    report = cache.import_paths([folder])
    assert (report.imported, report.duplicates, report.replaced) == (2, 1, 1)
    assert [(Path(r.path).name, r.reason) for r in report.rejected] == [("notes.txt", "not a DICOM file")]
    assert report.study_uids == ["1.2.3"] and report.series_uids == ["1.2.3.1"]
    assert report.to_json() == {
        "imported": 2,
        "duplicates": 1,
        "replaced": 1,
        "rejected": [{"path": str(folder / "notes.txt"), "reason": "not a DICOM file"}],
    }
    assert cache.has_instances(["1.2.3.1.5"]) == set(), "hidden files are not imported"


def test_import_reports_progress_with_a_known_total(cache, tmp_path):
    tmp_path = tmp_path / "in"
    tmp_path.mkdir()
    for i in range(5):
        (tmp_path / f"{i}.dcm").write_bytes(make_dicom(sop=f"1.2.3.1.{i + 1}", instance_number=i + 1))
    calls = []
    cache.import_paths([tmp_path], progress=lambda done, total, msg: calls.append((done, total)))
    assert calls[0] == (0, 5) and calls[-1] == (5, 5)
    assert [d for d, _ in calls] == list(range(6))


def test_import_cancel_keeps_what_was_imported(cache, tmp_path):
    from workstation.core.tasks import Cancelled, CancelToken

    tmp_path = tmp_path / "in"
    tmp_path.mkdir()
    for i in range(20):
        (tmp_path / f"{i:02d}.dcm").write_bytes(make_dicom(sop=f"1.2.3.1.{i + 1}", instance_number=i + 1))
    token = CancelToken()

    def progress(done, total, msg):
        if done == 5:
            token.cancel()

    with pytest.raises(Cancelled) as info:
        cache.import_paths([tmp_path], progress=progress, cancel=token)
    assert info.value.report.imported == 5
    assert cache.studies()[0].NumberOfStudyRelatedInstances == 5
    assert cache.verify().ok


# ----------------------------------------------------------------------------- rejections


def test_unsafe_uid_is_rejected_and_nothing_is_written(cache, workstation_home, tmp_path):
    """The test home sits inside tmp_path, so "../../x" resolved from a series folder would land in tmp_path."""
    outside_before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(CacheError, match=r"unsafe UID '\.\./\.\./x'"):
        cache.ingest_bytes(make_dicom(sop="../../x"))
    with pytest.raises(CacheError, match="unsafe UID"):
        cache.ingest_bytes(make_dicom(study="1.2/../../evil"))
    src = tmp_path / "evil.dcm"
    src.write_bytes(make_dicom(series="..\\..\\x"))
    report = cache.import_paths([src])
    assert report.imported == 0 and report.rejected[0].reason.startswith("unsafe UID")
    assert cache_files(workstation_home) == set()
    created = {p for p in tmp_path.rglob("*")} - outside_before
    assert {p for p in created if "cache" not in p.relative_to(tmp_path).parts} == {src}
    assert {p.name for p in created if p.is_file() and p != src} <= {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"}
    assert cache.studies() == []


def test_uid_checks_are_lenient_on_real_world_uids_strict_on_characters(cache):
    assert cache.ingest_bytes(make_dicom(study="1.2.03.4", series="1.2.03.4.01", sop="1.2.03.4.01.1")) == "imported"
    # letters (e.g. 64-char hex UIDs from real scanners), a trailing dot and NUL/space padding are accepted
    hex_uid = "05fa52f0" * 8
    assert cache.ingest_bytes(make_dicom(sop=hex_uid)) == "imported"
    assert cache.ingest_bytes(make_dicom(sop="1.2.abc")) == "imported"
    assert cache.ingest_bytes(make_dicom(sop="1.2.")) == "imported"
    assert cache.ingest_bytes(make_dicom(sop="1.2.9\x00")) == "imported"
    assert cache.has_instances([hex_uid, "1.2.abc", "1.2.", "1.2.9"]) == {hex_uid, "1.2.abc", "1.2.", "1.2.9"}
    for bad in ("1.2 3", "1.2_3", "1.2-3", "1.2\x013", "é.1", "1" * 65):
        with pytest.raises(CacheError, match="invalid UID"):
            cache.ingest_bytes(make_dicom(sop=bad))
    for bad in ("1..2", "1.2/3", "a:b", "~1"):
        with pytest.raises(CacheError, match="unsafe UID"):
            cache.ingest_bytes(make_dicom(sop=bad))
    with pytest.raises(CacheError, match="unsafe UID"):
        cache.ingest_bytes(make_dicom(series="1\\2"))
    assert len(cache.query("instance")) == 5


def test_bad_files_are_rejected_with_a_reason(cache):
    with pytest.raises(CacheError, match="^not a DICOM file$"):
        cache.ingest_bytes(b"hello world, this is text" * 20)
    with pytest.raises(CacheError, match="pixel data is 20 bytes but Rows x Columns x ... needs 32"):
        cache.ingest_bytes(make_dicom(pixel_bytes=20))
    data = make_dicom(rows=16)
    with pytest.raises(CacheError, match="truncated|pixel data is"):
        cache.ingest_bytes(data[:-100])
    ds = pydicom.dcmread(io.BytesIO(make_dicom()))
    del ds.SeriesInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(CacheError, match="^missing SeriesInstanceUID$"):
        cache.ingest_bytes(buf.getvalue())
    assert cache.studies() == []


def test_compressed_pixel_data_without_a_decoder_is_rejected(cache):
    ds = pydicom.dcmread(io.BytesIO(make_dicom()))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: pydicom has no decoder
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 16])
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(CacheError, match="MPEG2.*cannot be decoded"):
        cache.ingest_bytes(buf.getvalue())


def test_file_without_meta_is_stored_as_part10(cache):
    bare = make_dicom(meta=False)
    assert bare[128:132] != b"DICM"
    assert cache.ingest_bytes(bare) == "imported"
    (inst,) = cache.instances("1.2.3.1")
    stored = Path(inst.path).read_bytes()
    assert stored[128:132] == b"DICM"
    assert stored.endswith(bare), "the data set bytes are kept as they were"
    ds = pydicom.dcmread(inst.path)
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert ds.SOPInstanceUID == "1.2.3.1.1" and ds.pixel_array.shape == (4, 4)
    assert cache.ingest_bytes(bare) == "duplicate", "the rewrite is deterministic"


def test_specific_character_set_is_decoded(cache):
    cache.ingest_bytes(make_dicom(name="Гусева^Анна", charset="ISO_IR 144"))
    assert cache.studies()[0].PatientName == "Гусева^Анна"


# ----------------------------------------------------------------------------- search


@pytest.fixture
def searchable(cache):
    rows = [
        # study, name, id, date, modalities, description, accession
        ("1.1", "DOE^JOHN", "P1", "20200115", ["CT"], "CT CHEST", "ACC1"),
        ("1.2", "doe^jane", "P2", "20210301", ["CT", "MR"], "Brain MR", "ACC2"),
        ("1.3", "SMITH^ANNA", "Q3", "20191231", ["US"], "abdomen", "X-99"),
        ("1.4", "Гусева^Анна", "P4", "", ["MR"], "головной мозг", ""),
        ("1.5", "DOE^JOHN", "P1", "20220610", ["CR"], "chest pa", "ACC5"),
    ]
    for study, name, pid, date, mods, desc, acc in rows:
        for k, mod in enumerate(mods, start=1):
            cache.ingest_bytes(
                make_dicom(
                    study=study, series=f"{study}.{k}", sop=f"{study}.{k}.1", name=name, patient_id=pid,
                    date=date, modality=mod, description=desc, accession=acc, series_number=k,
                    charset="ISO_IR 192",
                )
            )
    return cache


def uids(cache, **kw) -> set[str]:
    return {s.StudyInstanceUID for s in cache.studies(QueryFilter(**kw))}


def test_search_patient_name_dicom_semantics(searchable):
    assert uids(searchable, PatientName="doe*") == {"1.1", "1.2", "1.5"}
    assert uids(searchable, PatientName="DOE^JOHN") == {"1.1", "1.5"}
    assert uids(searchable, PatientName="doe^john") == {"1.1", "1.5"}
    assert uids(searchable, PatientName="DOE") == set(), "no wildcard: exact match, not prefix"
    assert uids(searchable, PatientName="?MITH*") == {"1.3"}
    assert uids(searchable, PatientName="*^AN?A") == {"1.3"}
    assert uids(searchable, PatientName="*^ан?а") == {"1.4"}
    assert uids(searchable, PatientName="ГУСЕВА*") == {"1.4"}
    assert uids(searchable, PatientName="*") == {"1.1", "1.2", "1.3", "1.4", "1.5"}


def test_search_ids_accession_and_uids(searchable):
    assert uids(searchable, PatientID="P*") == {"1.1", "1.2", "1.4", "1.5"}
    assert uids(searchable, PatientID="P1") == {"1.1", "1.5"}
    assert uids(searchable, PatientID="p1") == set(), "PatientID matching is case-sensitive"
    assert uids(searchable, AccessionNumber="ACC2") == {"1.2"}
    assert uids(searchable, AccessionNumber="ACC?") == {"1.1", "1.2", "1.5"}
    assert uids(searchable, StudyInstanceUID="1.3") == {"1.3"}
    assert uids(searchable, StudyInstanceUID="1.3\\1.4") == {"1.3", "1.4"}
    assert uids(searchable, SeriesInstanceUID="1.2.2") == {"1.2"}


def test_search_dates(searchable):
    assert uids(searchable, StudyDate="20200115") == {"1.1"}
    assert uids(searchable, StudyDate="20200101-20211231") == {"1.1", "1.2"}
    assert uids(searchable, StudyDate="20210101-") == {"1.2", "1.5"}
    assert uids(searchable, StudyDate="-20200115") == {"1.1", "1.3"}
    with pytest.raises(CacheError, match="invalid date"):
        searchable.studies(QueryFilter(StudyDate="2020-01-01"))


def test_search_modality_description_and_text(searchable):
    assert uids(searchable, Modality="MR") == {"1.2", "1.4"}
    assert uids(searchable, Modality="ct") == {"1.1", "1.2"}
    assert uids(searchable, Modality="US\\CR") == {"1.3", "1.5"}
    assert uids(searchable, StudyDescription="*chest*") == {"1.1", "1.5"}
    assert uids(searchable, StudyDescription="ГОЛОВНОЙ*") == {"1.4"}
    assert uids(searchable, text="smi") == {"1.3"}
    assert uids(searchable, text="acc5") == {"1.5"}
    assert uids(searchable, text="brain") == {"1.2"}
    assert uids(searchable, text="q3") == {"1.3"}
    assert uids(searchable, PatientName="DOE*", Modality="CT", StudyDate="20200101-") == {"1.1", "1.2"}


def test_search_levels_and_limit(searchable):
    patients = searchable.query("patient", QueryFilter(PatientName="DOE*"))
    assert [(p.PatientID, p.NumberOfPatientRelatedStudies) for p in patients] == [("P2", 1), ("P1", 2)]
    series = searchable.query("series", QueryFilter(Modality="MR"))
    assert {(s.SeriesInstanceUID, s.Modality) for s in series} == {("1.2.2", "MR"), ("1.4.1", "MR")}
    inst = searchable.query("instance", QueryFilter(StudyInstanceUID="1.2"))
    assert [i.SOPInstanceUID for i in inst] == ["1.2.1.1", "1.2.2.1"]
    assert all(Path(i.path).is_file() for i in inst)
    newest = searchable.studies(limit=2)
    assert [s.StudyInstanceUID for s in newest] == ["1.5", "1.2"], "newest study first"
    study = next(s for s in searchable.studies() if s.StudyInstanceUID == "1.2")
    assert study.ModalitiesInStudy == ("CT", "MR") and study.NumberOfStudyRelatedSeries == 2
    with pytest.raises(CacheError, match="unknown level"):
        searchable.query("frame")


# ----------------------------------------------------------------------------- eviction


def _three_studies(cache) -> dict[str, int]:
    sizes = {}
    for n, study in enumerate(["2.1", "2.2", "2.3"], start=1):
        for k in range(n):
            cache.ingest_bytes(make_dicom(study=study, series=f"{study}.1", sop=f"{study}.1.{k + 1}", rows=16))
        sizes[study] = next(s.size_bytes for s in cache.studies() if s.StudyInstanceUID == study)
    return sizes


def test_evict_least_recently_used_first_and_never_pinned(cache, workstation_home):
    sizes = _three_studies(cache)
    cache.touch("2.1")  # now 2.2 is the least recently used, then 2.3, then 2.1
    cache.pin("2.2")
    total = sum(sizes.values())
    report = cache.evict(to_size=total - 1)
    assert report.evicted_studies == ["2.3"]
    assert report.freed_bytes == sizes["2.3"]
    assert report.size_bytes == cache.size_bytes() == sizes["2.1"] + sizes["2.2"]
    assert not any(p.startswith(relative_path("2.3", "x", "y")[:43]) for p in cache_files(workstation_home))
    report = cache.evict(to_size=0)
    assert report.evicted_studies == ["2.1"]
    assert [s.StudyInstanceUID for s in cache.studies()] == ["2.2"], "the pinned study stays"
    assert report.to_json() == {"evicted_studies": ["2.1"], "freed_bytes": sizes["2.1"], "size_bytes": sizes["2.2"]}
    assert cache.verify().ok


def test_quota_evicts_after_import_but_keeps_the_new_study(workstation_home, tmp_path):
    with Cache(workstation_home) as c:
        sizes = _three_studies(c)
    src = tmp_path / "new.dcm"
    src.write_bytes(make_dicom(study="3.1", series="3.1.1", sop="3.1.1.1"))
    quota = sizes["2.3"] + src.stat().st_size + 10
    with Cache(workstation_home, quota_bytes=quota) as c:
        c.touch("2.3")
        c.import_paths([src])
        left = {s.StudyInstanceUID for s in c.studies()}
        assert left == {"2.3", "3.1"}
        assert c.evict().evicted_studies == [], "already within quota"
        assert c.size_bytes() <= quota


def test_delete_and_pin_unknown(cache, workstation_home):
    _three_studies(cache)
    cache.delete("2.2")
    assert {s.StudyInstanceUID for s in cache.studies()} == {"2.1", "2.3"}
    assert cache.instances("2.2.1") == []
    assert len(cache_files(workstation_home)) == 4
    assert cache.query("patient")[0].NumberOfPatientRelatedStudies == 2
    with pytest.raises(CacheError, match="no study"):
        cache.delete("2.2")
    with pytest.raises(CacheError, match="no study"):
        cache.pin("9.9")
    assert cache.verify().ok


# ----------------------------------------------------------------------------- verify


def test_verify_repairs_orphans_missing_files_and_leftovers(cache, workstation_home):
    for k in range(3):
        cache.ingest_bytes(make_dicom(sop=f"1.2.3.1.{k + 1}", instance_number=k + 1))
    files = workstation_home / "cache" / "files"
    # a valid file without a row (as a crash between rename and commit leaves it)
    orphan = files / relative_path("1.2.3", "1.2.3.1", "1.2.3.1.9")
    orphan.write_bytes(make_dicom(sop="1.2.3.1.9", instance_number=9))
    # a garbage file without a row, a stray temporary file and a parked trash folder
    (files / "ab").mkdir()
    (files / "ab" / "junk.dcm").write_bytes(b"junk")
    (orphan.parent / ".x.dcm.1234.tmp").write_bytes(b"partial")
    (workstation_home / "cache" / "trash" / "old").mkdir()
    # a row whose file vanished, and a row whose file was cut short
    Path(cache.instance_path("1.2.3.1.1")).unlink()
    short = Path(cache.instance_path("1.2.3.1.2"))
    short.write_bytes(short.read_bytes()[:200])

    report = cache.verify()
    assert report.to_json() == {"ok": False, "orphan_files": 4, "missing_files": 2, "repaired": 0}
    assert cache.studies()[0].NumberOfStudyRelatedInstances == 3, "verify without repair changes nothing"

    report = cache.verify(repair=True)
    assert report.ok and report.orphan_files == 4 and report.missing_files == 2 and report.repaired >= 6
    assert cache.verify().to_json() == {"ok": True, "orphan_files": 0, "missing_files": 0, "repaired": 0}
    assert [i.SOPInstanceUID for i in cache.instances("1.2.3.1")] == ["1.2.3.1.3", "1.2.3.1.9"]
    (study,) = cache.studies()
    assert study.NumberOfStudyRelatedInstances == 2
    assert study.size_bytes == sum(p.stat().st_size for p in files.rglob("*.dcm"))
    assert not (files / "ab").exists() and not any((workstation_home / "cache" / "trash").iterdir())


# ----------------------------------------------------------------------------- threads


def test_ingest_from_four_threads_at_once(cache):
    errors: list[BaseException] = []
    results: list[str] = []
    barrier = threading.Barrier(4)

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for k in range(30):
                study = f"5.{k % 3}"
                # every thread also sends instance k of a shared series: one imports, the others see duplicates
                results.append(cache.ingest_bytes(make_dicom(study=study, series=f"{study}.1", sop=f"{study}.1.{k}")))
                results.append(
                    cache.ingest_bytes(make_dicom(study=study, series=f"{study}.{t + 2}", sop=f"{study}.{t + 2}.{k}"))
                )
                if k % 10 == 0:
                    cache.studies(QueryFilter(PatientName="DOE*"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert results.count("imported") == 30 + 4 * 30
    assert results.count("duplicate") == 3 * 30
    studies = {s.StudyInstanceUID: s for s in cache.studies()}
    assert set(studies) == {"5.0", "5.1", "5.2"}
    assert all(s.NumberOfStudyRelatedInstances == 50 and s.NumberOfStudyRelatedSeries == 5 for s in studies.values())
    assert len(cache.query("instance")) == 150
    assert cache.verify().ok


def test_cache_files_are_not_world_writable(cache):
    cache.ingest_bytes(make_dicom())
    mode = os.stat(cache.instance_path("1.2.3.1.1")).st_mode
    assert not mode & 0o002


# ----------------------------------------------------------------------------- duplicates without hashes, schema


def test_same_size_different_bytes_is_a_replacement(cache, tmp_path):
    first, second = make_dicom(pixel=1), make_dicom(pixel=2)
    assert len(first) == len(second) and first != second
    assert cache.ingest_bytes(first) == "imported"
    src = tmp_path / "b.dcm"
    src.write_bytes(second)
    assert cache.ingest_file(src) == "replaced"
    assert cache.ingest_file(src) == "duplicate"
    report = cache.import_paths([src])
    assert (report.imported, report.duplicates, report.replaced) == (0, 1, 0)
    (inst,) = cache.instances("1.2.3.1")
    assert Path(inst.path).read_bytes() == second


def test_damaged_stored_file_is_stored_again(cache, tmp_path):
    data = make_dicom()
    cache.ingest_bytes(data)
    (inst,) = cache.instances("1.2.3.1")
    Path(inst.path).write_bytes(data[:-10])
    src = tmp_path / "a.dcm"
    src.write_bytes(data)
    report = cache.import_paths([src])
    assert (report.imported, report.duplicates, report.replaced) == (1, 0, 0)
    assert Path(inst.path).read_bytes() == data and cache.verify().ok


def test_same_uid_twice_in_one_import(cache, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(make_dicom(pixel=1))
    (folder / "b.dcm").write_bytes(make_dicom(pixel=2))
    (folder / "c.dcm").write_bytes(make_dicom(pixel=2))
    report = cache.import_paths([folder])
    assert (report.imported, report.duplicates, report.replaced) == (1, 1, 1)
    assert cache.verify().ok and len(cache.query("instance")) == 1


def _index_dump(cache: Cache) -> dict:
    conn = cache._conn
    skip = {"last_access", "added"}
    out = {}
    for table, key in (("patients", "PatientID"), ("studies", "StudyInstanceUID"), ("series", "SeriesInstanceUID"),
                       ("instances", "SOPInstanceUID")):
        rows = conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
        out[table] = [{k: r[k] for k in r.keys() if k not in skip} for r in rows]
    return out


def test_bulk_import_indexes_exactly_like_one_by_one(tmp_path):
    """Rows written a chunk at a time equal rows written one instance at a time (counts, filled attributes)."""
    folder = tmp_path / "in"
    folder.mkdir()
    specs = [
        dict(study="1.2.3", series="1.2.3.1", sop="1.2.3.1.1", description="", modality=""),
        dict(study="1.2.3", series="1.2.3.1", sop="1.2.3.1.2", description="HEAD", modality="ct"),
        dict(study="1.2.3", series="1.2.3.2", sop="1.2.3.2.1", description="OTHER", modality="MR", name=""),
        dict(study="1.2.4", series="1.2.4.1", sop="1.2.4.1.1", patient_id="P2", accession="A1"),
        dict(study="1.2.4", series="1.2.4.1", sop="1.2.4.1.2", patient_id="P2", accession="A2", series_number=None),
        dict(study="1.2.5", series="1.2.5.1", sop="1.2.5.1.1", name="DOE^JANE", date=""),
    ]
    for i, spec in enumerate(specs):
        (folder / f"{i}.dcm").write_bytes(make_dicom(**spec, instance_number=i))
    with Cache(tmp_path / "one") as one:
        one.ingest_bytes(make_dicom(study="1.2.3", series="1.2.3.1", sop="1.2.3.1.0", modality=""))
        for i in range(len(specs)):
            assert one.ingest_file(folder / f"{i}.dcm") == "imported"
        expected = _index_dump(one)
    with Cache(tmp_path / "bulk") as bulk:
        bulk.ingest_bytes(make_dicom(study="1.2.3", series="1.2.3.1", sop="1.2.3.1.0", modality=""))
        assert bulk.import_paths([folder]).imported == len(specs)
        assert _index_dump(bulk) == expected


def test_schema_1_index_is_migrated_and_slice_records_are_filled_in_later(workstation_home, tmp_path):
    import sqlite3

    data = make_dicom(rows=4)
    with Cache(workstation_home) as cache:
        cache.ingest_bytes(data)
        cache.ingest_bytes(make_dicom(sop="1.2.3.1.2", instance_number=2))
    db = workstation_home / "cache" / "index.sqlite"
    conn = sqlite3.connect(db)
    cols = "SOPInstanceUID, SeriesInstanceUID, StudyInstanceUID, SOPClassUID, InstanceNumber, NumberOfFrames, " \
           "Rows, Columns, TransferSyntaxUID, path, size_bytes, added"
    conn.executescript(f"""
        CREATE TABLE v1(SOPInstanceUID TEXT PRIMARY KEY, SeriesInstanceUID TEXT NOT NULL,
            StudyInstanceUID TEXT NOT NULL, SOPClassUID TEXT NOT NULL DEFAULT '', InstanceNumber INTEGER,
            NumberOfFrames INTEGER NOT NULL DEFAULT 1, Rows INTEGER NOT NULL DEFAULT 0,
            Columns INTEGER NOT NULL DEFAULT 0, TransferSyntaxUID TEXT NOT NULL DEFAULT '',
            path TEXT NOT NULL UNIQUE, size_bytes INTEGER NOT NULL, sha1 TEXT NOT NULL, added REAL NOT NULL DEFAULT 0);
        INSERT INTO v1({cols}, sha1) SELECT {cols}, 'x' FROM instances;
        DROP TABLE instances;
        ALTER TABLE v1 RENAME TO instances;
        UPDATE meta SET value = '1' WHERE key = 'schema_version';
    """)
    conn.commit()
    conn.close()
    with Cache(workstation_home) as cache:
        conn = cache._conn
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
        columns = [r[1] for r in conn.execute("PRAGMA table_info(instances)")]
        assert "sha1" not in columns and "geometry" in columns
        assert conn.execute("SELECT count(*) FROM instances WHERE geometry IS NULL").fetchone()[0] == 2
        assert [i.SOPInstanceUID for i in cache.instances("1.2.3.1")] == ["1.2.3.1.1", "1.2.3.1.2"]
        assert cache.ingest_bytes(data) == "duplicate"
        headers = cache.volume_slices("1.2.3.1")
        assert [h.record.SOPInstanceUID for h in headers] == ["1.2.3.1.1", "1.2.3.1.2"]
        assert conn.execute("SELECT count(*) FROM instances WHERE geometry IS NULL").fetchone()[0] == 0
        assert cache.volume_slices("1.2.3.1") == headers
        assert cache.verify().ok
