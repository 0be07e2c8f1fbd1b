"""Key Object Selection documents: ours checked by DCMTK (dsrdump) and dicom3tools (dciodvfy), others' made by DCMTK.

The referenced images are real ones from the sample corpus: single-frame CT slices and multi-frame
enhanced MR instances. The document of "another system" is written by DCMTK's own SR encoder
(xml2dsr), in Implicit VR with undefined lengths and its own layout of the content tree.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.peers import require_binary
from workstation.core.dicom.key_objects import (
    KEY_OBJECT_SELECTION,
    MANUFACTURER,
    OF_INTEREST,
    Code,
    KeyReference,
    build_key_object,
    load_key_object,
    read_key_object,
    to_part10,
    with_key,
    without_key,
)

GE = "dcm_qa_ct/In/GE"  # 28 single-frame CT slices of one study
ENHANCED = "dcm_qa_enh/In/Siemens/XA10"  # 4 enhanced MR instances of 6 frames, one study
DSRDUMP = shutil.which("dsrdump") or "/usr/bin/dsrdump"
XML2DSR = shutil.which("xml2dsr") or "/usr/bin/xml2dsr"
DCIODVFY = shutil.which("dciodvfy") or "/usr/bin/dciodvfy"
DCMTK_LIMITS = {
    "W: Check for template constraints not yet supported",
    "W: The VR checker does not support this Specific Character Set: ISO_IR 192",
}
"""What dsrdump 3.6.7 says of any document (it checks no templates) or of any UTF-8 one: about DCMTK, not ours."""


def headers(samples: Path, folder: str, n: int | None = None) -> list[Dataset]:
    paths = sorted(p for p in (samples / folder).iterdir() if p.suffix == ".dcm")
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in paths[:n]]


def reference(ds: Dataset, frames=None) -> KeyReference:
    return KeyReference(ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID, frames)


@pytest.fixture
def enhanced_document(samples, tmp_path) -> tuple[Path, list[Dataset]]:
    """Ours: two whole enhanced MR instances and frames 2 and 5 of a third, with description and creator."""
    images = headers(samples, ENHANCED)
    ds = build_key_object(images[0], [reference(images[0]), reference(images[1]), reference(images[2], (5, 2))],
                          description="Läsion im Segment 7", content_creator="Müller^Eva")
    path = tmp_path / "ours.dcm"
    path.write_bytes(to_part10(ds))
    return path, images


def test_a_built_document_reads_back_with_every_reference_and_frame(enhanced_document):
    path, images = enhanced_document
    doc = load_key_object(path)
    assert doc.title == "Of Interest" and doc.title_code == OF_INTEREST
    assert doc.description == "Läsion im Segment 7" and doc.observer == "Müller^Eva"
    assert doc.ours and doc.Manufacturer == MANUFACTURER and not doc.is_rejection_note and doc.warnings == ()
    assert doc.keys == [(images[0].SOPInstanceUID, None), (images[1].SOPInstanceUID, None),
                        (images[2].SOPInstanceUID, 2), (images[2].SOPInstanceUID, 5)]
    assert {(i.SOPClassUID, i.SeriesInstanceUID, i.StudyInstanceUID) for i in doc.images} == {
        (images[0].SOPClassUID, images[0].SeriesInstanceUID, images[0].StudyInstanceUID)}
    assert doc.references() == [reference(images[0]), reference(images[1]), reference(images[2], (2, 5))]


def test_the_file_is_part10_explicit_le_with_the_modules_the_iod_requires(enhanced_document):
    path, images = enhanced_document
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == KEY_OBJECT_SELECTION
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        assert ds[keyword].value == images[0].get(keyword, ""), keyword
    assert ds.Modality == "KO" and ds.SeriesNumber == 999 and ds.InstanceNumber == 1
    assert ds.ContentDate and ds.ContentTime and "ReferencedPerformedProcedureStepSequence" in ds
    assert ds.SpecificCharacterSet == "ISO_IR 192", "the umlauts need a character set"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "2010"
    evidence = ds.CurrentRequestedProcedureEvidenceSequence
    assert len(evidence) == 1 and evidence[0].StudyInstanceUID == images[0].StudyInstanceUID
    listed = [s.ReferencedSOPInstanceUID for se in evidence[0].ReferencedSeriesSequence for s in se.ReferencedSOPSequence]
    assert listed == [i.SOPInstanceUID for i in images[:3]]
    framed = [item for item in ds.ContentSequence if item.ValueType == "IMAGE"][2].ReferencedSOPSequence[0]
    assert list(framed.ReferencedFrameNumber) == [2, 5]


def test_dsrdump_reads_ours_without_a_complaint_and_lists_the_references(enhanced_document, samples, tmp_path):
    require_binary(DSRDUMP, "dcmtk")
    ct = headers(samples, GE, 3)
    ct_doc = tmp_path / "ct.dcm"
    ct_doc.write_bytes(to_part10(build_key_object(ct[0], [reference(d) for d in ct])))
    for path, uids in ((enhanced_document[0], [i.SOPInstanceUID for i in enhanced_document[1][:3]]),
                       (ct_doc, [d.SOPInstanceUID for d in ct])):
        dump = subprocess.run([DSRDUMP, "-v", "+Pu", "+Pl", "+U8", str(path)], capture_output=True, text=True)
        assert dump.returncode == 0, dump.stderr
        complaints = [line for line in (dump.stdout + dump.stderr).splitlines()
                      if line.startswith(("E:", "W:", "F:")) and line not in DCMTK_LIMITS]
        assert complaints == []
        assert dump.stdout.startswith("Key Object Selection Document")
        assert '<CONTAINER:(,,"Of Interest")=SEPARATE>' in dump.stdout
        images = [line.strip() for line in dump.stdout.splitlines() if "<contains IMAGE:" in line]
        assert [next(u for u in uids if f'"{u}"' in line) for line in images] == uids
    assert '<has obs context PNAME:(,,"Person Observer Name")="Müller^Eva">' in subprocess.run(
        [DSRDUMP, "+U8", str(enhanced_document[0])], capture_output=True, text=True).stdout
    assert f'"{enhanced_document[1][2].SOPInstanceUID}",2,5)>' in subprocess.run(
        [DSRDUMP, "+Pu", "+Pl", str(enhanced_document[0])], capture_output=True, text=True).stdout


def test_dciodvfy_finds_no_error_in_ours(enhanced_document):
    require_binary(DCIODVFY, "dicom3tools")   # make test installs it; its absence fails under CI
    check = subprocess.run([DCIODVFY, "-new", str(enhanced_document[0])], capture_output=True, text=True)
    lines = (check.stdout + check.stderr).splitlines()
    assert "KeyObjectSelectionDocument" in lines, lines
    assert [line for line in lines if line.startswith("Error")] == []
    # What it still says is about the sample's own attributes (empty study date, an old-style name), not ours.
    assert all("DICOMDIR" in line or "Retired Person Name form" in line for line in lines
               if line.startswith("Warning")), lines


OTHER_SYSTEM_XML = """<?xml version="1.0" encoding="UTF-8"?>
<report type="Key Object Selection Document">
<sopclass uid="1.2.840.10008.5.1.4.1.1.88.59">KeyObjectSelectionDocumentStorage</sopclass>
<modality>KO</modality>
<manufacturer>ACME PACS</manufacturer>
<patient><id>{patient_id}</id><name><last>{patient_name}</last></name></patient>
<study uid="{study}"></study>
<series uid="1.2.826.0.1.3680043.8.498.900001"><number>7</number></series>
<instance uid="1.2.826.0.1.3680043.8.498.900002"><number>3</number></instance>
<evidence type="Current Requested Procedure">
<study uid="{study}">
<series uid="{series}">
<value><sopclass uid="{sop_class}"/><instance uid="{sop0}"/></value>
<value><sopclass uid="{sop_class}"/><instance uid="{sop1}"/></value>
</series>
</study>
</evidence>
<document>
<content>
<date>2021-03-04</date>
<time>10:11:12</time>
<container flag="SEPARATE">
<concept><value>113004</value><scheme><designator>DCM</designator></scheme><meaning>For Teaching</meaning></concept>
<image><relationship>CONTAINS</relationship>
<value><sopclass uid="{sop_class}"/><instance uid="{sop1}"/><frames>6,1</frames></value></image>
<image><relationship>CONTAINS</relationship>
<value><sopclass uid="{sop_class}"/><instance uid="{sop0}"/></value></image>
<text><relationship>CONTAINS</relationship>
<concept><value>113012</value><scheme><designator>DCM</designator></scheme><meaning>Key Object Description</meaning></concept>
<value>teaching file: typical appearance</value></text>
</container>
</content>
</document>
</report>
"""


def other_systems_document(samples: Path, tmp_path: Path) -> tuple[Path, list[Dataset]]:
    """A KOS written by DCMTK's SR encoder from XML, as a PACS would send one."""
    require_binary(XML2DSR, "dcmtk")
    images = headers(samples, ENHANCED, 2)
    xml = tmp_path / "pacs.xml"
    xml.write_text(OTHER_SYSTEM_XML.format(
        patient_id=images[0].PatientID, patient_name=str(images[0].PatientName), study=images[0].StudyInstanceUID,
        series=images[0].SeriesInstanceUID, sop_class=images[0].SOPClassUID, sop0=images[0].SOPInstanceUID,
        sop1=images[1].SOPInstanceUID))
    out = tmp_path / "pacs.dcm"
    made = subprocess.run([XML2DSR, "+ti", "-e", str(xml), str(out)], capture_output=True, text=True)
    assert made.returncode == 0 and out.exists(), made.stderr
    return out, images


def test_a_document_made_by_another_system_is_read_too(samples, tmp_path):
    path, images = other_systems_document(samples, tmp_path)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    doc = load_key_object(path)
    assert doc.title == "For Teaching" and doc.title_code == Code("113004", "DCM", "For Teaching")
    assert doc.description == "teaching file: typical appearance"
    assert not doc.ours and doc.Manufacturer == "ACME PACS" and doc.warnings == ()
    assert doc.keys == [(images[1].SOPInstanceUID, 6), (images[1].SOPInstanceUID, 1), (images[0].SOPInstanceUID, None)]
    assert all(i.SeriesInstanceUID == images[0].SeriesInstanceUID for i in doc.images)
    assert doc.ContentDate == "20210304" and doc.SeriesNumber == 7 and doc.InstanceNumber == 3
    # A new document of ours made from it keeps every reference.
    ours = build_key_object(images[0], doc.references())
    assert read_key_object(ours).keys == [(images[1].SOPInstanceUID, 1), (images[1].SOPInstanceUID, 6),
                                          (images[0].SOPInstanceUID, None)]


def _minimal(samples: Path) -> Dataset:
    ct = headers(samples, GE, 1)[0]
    return build_key_object(ct, [reference(ct)])


@pytest.mark.parametrize(("damage", "message"), [
    (lambda ds: setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.88.11"),
     "not a Key Object Selection document (its SOP Class UID is 1.2.840.10008.5.1.4.1.1.88.11)"),
    (lambda ds: setattr(ds, "ValueType", "TEXT"), "root content item is a TEXT, not a CONTAINER"),
    (lambda ds: delattr(ds, "ContentSequence"), "no content (Content Sequence missing or empty)"),
    (lambda ds: setattr(ds, "ContentSequence", Sequence()), "no content"),
    (lambda ds: delattr(ds.ContentSequence[0], "ReferencedSOPSequence"), "IMAGE content item 1 references no instance"),
    (lambda ds: delattr(ds.ContentSequence[0].ReferencedSOPSequence[0], "ReferencedSOPInstanceUID"),
     "IMAGE content item 1 has no Referenced SOP Instance UID"),
    (lambda ds: setattr(ds.ContentSequence[0].ReferencedSOPSequence[0], "ReferencedFrameNumber", "0"),
     "Referenced Frame Number 0 of"),
    (lambda ds: setattr(ds.ContentSequence[0], "ValueType", "TEXT"), "references no instance (no IMAGE"),
])
def test_a_document_that_cannot_be_read_says_what_is_wrong(samples, damage, message):
    ds = _minimal(samples)
    damage(ds)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_key_object(ds)


def test_what_is_wrong_but_loses_nothing_is_a_warning(samples):
    ds = _minimal(samples)
    del ds.CurrentRequestedProcedureEvidenceSequence
    del ds.ConceptNameCodeSequence
    doc = read_key_object(ds)
    assert doc.keys == [(ds.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID, None)]
    assert doc.title == "" and doc.images[0].SeriesInstanceUID == ""
    assert [w.split(" (")[0] for w in doc.warnings] == [
        "it has no document title", "1 referenced instance(s) are not listed in its evidence sequence, so their "
        "series is not known"]


def test_a_file_that_is_no_dicom_says_so(tmp_path):
    bad = tmp_path / "notes.dcm"
    bad.write_text("not DICOM at all")
    with pytest.raises(ValueError, match="notes.dcm is not a readable DICOM file"):
        load_key_object(bad)
    with pytest.raises(ValueError, match="missing.dcm cannot be read"):
        load_key_object(tmp_path / "missing.dcm")


def test_building_refuses_what_would_make_a_wrong_document(samples):
    ct = headers(samples, GE, 1)[0]
    with pytest.raises(ValueError, match="at least one referenced image"):
        build_key_object(ct, [])
    with pytest.raises(ValueError, match="frame numbers of .* start at 1"):
        build_key_object(ct, [reference(ct, (0,))])
    with pytest.raises(ValueError, match="the study's StudyInstanceUID '' is not a UID"):
        build_key_object({"PatientName": "X"}, [reference(ct)])


def test_a_dict_of_study_attributes_and_chosen_uids(samples):
    ct = headers(samples, GE, 1)[0]
    study = {"StudyInstanceUID": ct.StudyInstanceUID, "PatientName": "Doe^John", "PatientID": "P1"}
    ds = build_key_object(study, [reference(ct)], title=(113013, "DCM", "Best In Set"), series_uid="1.2.3.4",
                          instance_uid="1.2.3.4.1", series_number=42, instance_number=3)
    assert (ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SeriesNumber, ds.InstanceNumber) == ("1.2.3.4", "1.2.3.4.1", 42, 3)
    assert ds.PatientName == "Doe^John" and ds.StudyDate == "" and "SpecificCharacterSet" not in ds
    assert read_key_object(ds).title_code == Code("113013", "DCM", "Best In Set")


def test_editing_a_selection():
    a = KeyReference("1.2.840.10008.5.1.4.1.1.4.1", "1.1", "9.9", None)
    b = KeyReference("1.2.840.10008.5.1.4.1.1.4.1", "1.2", "9.9", (3,))
    refs = with_key([a], b)
    assert with_key(refs, b._replace(frames=(1,))) == [a, b._replace(frames=(1, 3))]
    assert with_key(refs, a._replace(frames=(2,))) == refs, "a whole instance already holds its frames"
    assert without_key(refs, "1.1", 2, number_of_frames=4) == ([a._replace(frames=(1, 3, 4)), b], True)
    assert without_key(refs, "1.2", 3) == ([a], True)
    assert without_key(refs, "1.2", 4) == (refs, False)
    assert without_key(refs, "1.3") == (refs, False)
