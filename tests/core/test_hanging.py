"""Hanging protocols on real studies: the shipped protocols place what their rules say, a study no
protocol fits gets the default, the most recent prior is found (or asked for), the user's protocols
load beside the shipped ones, and what the user arranges and saves opens the same way again.

Where the corpus has no study of a kind (a multi-sequence MR, a radiograph with a prior, a
mammogram) the test writes derived copies of real files into tmp_path: the same pixels and headers
with new UIDs and the few attributes named where they are made.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from workstation.core.cache import Cache
from workstation.core.loading import read_study
from workstation.core.model import Study, hanging
from workstation.core.model.hanging import (
    DEFAULT,
    CellRef,
    Protocol,
    StudyInput,
    choose,
    load_protocols,
    protocol_from_arrangement,
    save_protocol,
)
from workstation.core.pixels.presets import load_presets

CT_HEAD = "dcm_qa_ct/In/Philips/S21570"             # 140-slice axial 'STD BRAIN 1MM, iDose' + a localizer
CHEST_CT = "tcia_covid19_ny_sbu/data-sample/A098752"  # prior 'CT CHEST WO IV CONT', current 'CT CHEST PULMONARY ANGIO'
ABDOMEN_CT = "tcia_covid19_ny_sbu/data-sample/A067967"
OTHER_CHEST_CT = "tcia_covid19_ny_sbu/data-sample/A002304"
MR_SAGITTAL = "dcm_qa_deident/In"                   # 196-slice sagittal 'Accelerated SAG IR-SPGR'
CR = "orthanc_tests/Database/Issue44/Monochrome1-Jpeg.dcm"  # CR, no body part, StudyDate 20170327
CR_TIBIA = "nema_wg04/J2KR/RG3_J2KR"                # CR, BodyPartExamined EXTREMITY
US_CINE = "orthanc_tests/Database/Issue16.dcm"     # US, 34 frames
US_STILL = "nema_wg04/RLE/US1_RLE"


def cached(home: Path, *paths: Path) -> dict[str, StudyInput]:
    """Import into the cache at `home`; every study it then holds, as `choose` takes it, by UID."""
    with Cache(home) as cache:
        report = cache.import_paths(list(paths))
        assert not report.rejected, report.rejected
        return {s.StudyInstanceUID: StudyInput.of(read_study(cache, s.StudyInstanceUID)) for s in cache.studies()}


def by_description(studies: dict[str, StudyInput], text: str) -> StudyInput:
    (found,) = [s for s in studies.values() if s.study.StudyDescription == text]
    return found


def ref(item: StudyInput, d) -> CellRef:
    return CellRef(item.uid, d.key)


def derived(source: Path, target: Path, **changes) -> Path:
    """A copy of a real file with a new SOP Instance UID and the given attributes changed."""
    ds = pydicom.dcmread(source)
    uid = generate_uid()
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    for name, value in changes.items():
        setattr(ds, name, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)
    return target


# --- the shipped protocols ---------------------------------------------------------------------


def test_the_shipped_protocols_load_whole_and_name_window_presets_that_exist(caplog):
    with caplog.at_level(logging.WARNING):
        protocols = load_protocols()
    assert not [r for r in caplog.records if r.name == hanging.__name__]
    assert {p.name for p in protocols} >= {"CT head", "CT chest", "MR brain", "CR/DX chest with prior",
                                          "MG 4-up", "US/XA cine"}
    presets = {name.casefold() for name in load_presets()}
    for protocol in protocols:
        assert Protocol.from_json(protocol.to_json()) == protocol   # what save_protocol writes reads back
        for viewport in protocol.viewports:
            window = viewport.options.get("window") if viewport else None
            assert window is None or window.casefold() in presets, (protocol.name, window)


def test_a_head_ct_opens_on_its_axial_stack_in_the_brain_window(samples, tmp_path):
    (head,) = cached(tmp_path / "home", samples / CT_HEAD).values()
    scout, stack = head.display_sets                 # SeriesNumber 100 (the scout) comes first
    assert scout.is_localizer and stack.orientation == "axial" and len(stack) == 140

    arrangement = choose(load_protocols(), head, [])

    assert arrangement.protocol == "CT head"
    assert (arrangement.rows, arrangement.columns) == (1, 1)
    assert arrangement.cells == (ref(head, stack),)
    assert arrangement.options[0]["window"] == "CT Brain"
    assert arrangement.needs_prior is None


def test_a_chest_ct_shows_its_axial_stack_in_lung_and_mediastinal_windows_side_by_side(samples, tmp_path):
    studies = cached(tmp_path / "home", samples / CHEST_CT)
    for description in ("CT CHEST WO IV CONT", "CT CHEST PULMONARY ANGIO WITH IV CON"):
        chest = by_description(studies, description)
        (axial,) = [d for d in chest.display_sets if d.orientation == "axial"]

        arrangement = choose(load_protocols(), chest, [])

        assert arrangement.protocol == "CT chest"
        assert (arrangement.rows, arrangement.columns) == (1, 2)
        # One axial stack, so it shows twice (the second viewport may repeat), not the coronal beside it.
        assert arrangement.cells == (ref(chest, axial), ref(chest, axial))
        assert [o["window"] for o in arrangement.options] == ["Lung", "Mediastinum"]
        assert arrangement.options[0]["link"] == arrangement.options[1]["link"]


# --- MR brain: a multi-sequence study made of derived copies ----------------------------------


SEQUENCES = (   # SeriesNumber, SeriesDescription, axial: numbered so that their order is not the protocol's
    (2, "AX DWI b1000", True),
    (3, "AX T2 FLAIR", True),
    (4, "AX T2 TSE", True),
    (5, "AX T1 SE", True),
    (6, "SAG T1 3D", False),
)


@pytest.fixture
def mr_brain(samples, tmp_path) -> StudyInput:
    """One MR study of five sequences, derived from the 196-slice sagittal MR: each a series of its
    own (new Series Instance UID, description and number); the axial ones get an axial Image
    Orientation and positions 5 mm apart. The sagittal T1 has more slices than the axial ones."""
    files = sorted((samples / MR_SAGITTAL).glob("*.dcm"))[80:110]
    folder = tmp_path / "mr"
    for number, description, axial in SEQUENCES:
        series = generate_uid()
        for i, source in enumerate(files[:12] if axial else files):
            changes = dict(SeriesInstanceUID=series, SeriesDescription=description, SeriesNumber=number,
                           InstanceNumber=i + 1)
            if axial:
                changes.update(ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                               ImagePositionPatient=[-120.0, -120.0, -30.0 + 5 * i])
            derived(source, folder / f"{number}-{i:03}.dcm", **changes)
    (study,) = cached(tmp_path / "home", folder).values()
    return study


def sets_by_description(study: StudyInput) -> dict:
    return {d.series.SeriesDescription: d for d in study.display_sets}


def test_a_brain_mr_hangs_axial_t1_t2_flair_and_diffusion_by_their_descriptions(mr_brain):
    sets = sets_by_description(mr_brain)
    assert sets["SAG T1 3D"].orientation == "sagittal" and sets["AX T1 SE"].orientation == "axial"

    arrangement = choose(load_protocols(), mr_brain, [])

    assert arrangement.protocol == "MR brain"
    assert (arrangement.rows, arrangement.columns) == (2, 2)
    # The axial T1 over the sagittal one with more slices; T2 not the T2 FLAIR with the lower number.
    assert arrangement.cells == tuple(ref(mr_brain, sets[d]) for d in ("AX T1 SE", "AX T2 TSE", "AX T2 FLAIR",
                                                                         "AX DWI b1000"))


def test_without_a_matching_protocol_the_largest_stacks_come_first_up_to_two_by_two(mr_brain, samples, tmp_path):
    sets = sets_by_description(mr_brain)
    arrangement = choose([], mr_brain, [])
    assert arrangement.protocol == DEFAULT and (arrangement.rows, arrangement.columns) == (2, 2)
    # 30 sagittal slices before 12 axial ones, then by Series Number; the fifth set does not fit.
    assert arrangement.cells == tuple(ref(mr_brain, sets[d]) for d in ("SAG T1 3D", "AX DWI b1000", "AX T2 FLAIR",
                                                                         "AX T2 TSE"))

    (head,) = cached(tmp_path / "head", samples / CT_HEAD).values()
    scout, stack = head.display_sets
    arrangement = choose([], head, [])
    assert (arrangement.rows, arrangement.columns) == (1, 1)   # the scout is not counted, nor shown
    assert arrangement.cells == (ref(head, stack),)


def test_a_study_no_protocol_matches_gets_the_default(samples, tmp_path):
    studies = cached(tmp_path / "home", samples / ABDOMEN_CT)
    abdomen = by_description(studies, "CT ANGIO ABD AND PEL WWO IV CONT")   # CT, body part ABDOMEN

    arrangement = choose(load_protocols(), abdomen, [])

    assert arrangement.protocol == DEFAULT
    assert (arrangement.rows, arrangement.columns) == (2, 2)
    in_series_order = sorted(abdomen.display_sets, key=lambda d: d.series.SeriesNumber)   # one image each
    assert arrangement.cells == (*(ref(abdomen, d) for d in in_series_order), None)
    assert arrangement.options == ({}, {}, {}, {})


# --- a radiograph and its prior ----------------------------------------------------------------


@pytest.fixture
def radiographs(samples, tmp_path):
    """The CR (2017-03-27) and derived copies as the same patient's other studies: a prior
    (2016-05-12), an older one (2015-01-20) and a later one (2018-02-01), each with a new Study and
    Series Instance UID and that Study Date."""
    source = samples / CR
    paths = {}
    for name, date in (("prior", "20160512"), ("older", "20150120"), ("later", "20180201")):
        paths[name] = derived(source, tmp_path / "derived" / f"{name}.dcm", StudyInstanceUID=generate_uid(),
                              SeriesInstanceUID=generate_uid(), StudyDate=date, SeriesDate=date)
    studies = cached(tmp_path / "home", source, *paths.values())
    by_date = {s.study.StudyDate: s for s in studies.values()}
    return by_date["20170327"], by_date["20160512"], by_date["20150120"], by_date["20180201"]


def test_a_chest_radiograph_opens_beside_its_most_recent_prior_current_on_the_left(radiographs):
    current, prior, older, later = radiographs
    (shown,), (previous,) = current.display_sets, prior.display_sets

    arrangement = choose(load_protocols(), current, [older, later, prior])

    assert arrangement.protocol == "CR/DX chest with prior"
    assert (arrangement.rows, arrangement.columns) == (1, 2)
    assert arrangement.cells == (ref(current, shown), ref(prior, previous))
    assert arrangement.prior == prior.uid and arrangement.needs_prior is None


def test_a_prior_only_on_the_pacs_is_asked_for(radiographs):
    current, prior, older, later = radiographs
    (shown,) = current.display_sets
    # As a C-FIND answers: the records only. A CT of the same patient, more recent, is no prior for a radiograph.
    known = StudyInput(Study(prior.uid, PatientID=current.study.PatientID, StudyDate="20160512",
                             ModalitiesInStudy=("CR",)))
    ct = StudyInput(Study(generate_uid(), PatientID=current.study.PatientID, StudyDate="20161130",
                          ModalitiesInStudy=("CT",)))

    arrangement = choose(load_protocols(), current, [ct, known])

    assert arrangement.protocol == "CR/DX chest with prior"
    assert arrangement.cells == (ref(current, shown), None)
    assert arrangement.needs_prior == prior.uid


def test_a_radiograph_without_an_earlier_study_or_of_another_body_part_gets_the_default(radiographs, samples, tmp_path):
    current, prior, older, later = radiographs
    arrangement = choose(load_protocols(), current, [later])
    assert arrangement.protocol == DEFAULT and arrangement.cells == (ref(current, current.display_sets[0]),)

    tibia = samples / CR_TIBIA   # body part EXTREMITY: not a chest, whatever priors it has
    copy = derived(tibia, tmp_path / "tibia-prior.dcm", StudyInstanceUID=generate_uid(),
                   SeriesInstanceUID=generate_uid(), StudyDate="20030101")
    studies = cached(tmp_path / "tibia-home", tibia, copy)
    by_date = {s.study.StudyDate: s for s in studies.values()}
    arrangement = choose(load_protocols(), by_date["20040826"], [by_date["20030101"]])
    assert arrangement.protocol == DEFAULT and (arrangement.rows, arrangement.columns) == (1, 1)


# --- mammography and cine ----------------------------------------------------------------------


def test_a_mammogram_hangs_its_four_views_by_laterality_and_view(samples, tmp_path):
    """Four derived copies of the CR as the views of a mammogram (Modality MG, Image Laterality and
    View Position set) in one series, in an order that is not the 4-up's."""
    series, study = generate_uid(), generate_uid()
    for number, (side, view) in enumerate((("L", "MLO"), ("R", "CC"), ("L", "CC"), ("R", "MLO")), start=1):
        derived(samples / CR, tmp_path / "mg" / f"{number}.dcm", Modality="MG", StudyInstanceUID=study,
                SeriesInstanceUID=series, InstanceNumber=number, ImageLaterality=side, ViewPosition=view)
    (mammogram,) = cached(tmp_path / "home", tmp_path / "mg").values()
    views = {d.ImageLaterality + d.ViewPosition: d for d in mammogram.display_sets}
    assert len(views) == 4

    arrangement = choose(load_protocols(), mammogram, [])

    assert arrangement.protocol == "MG 4-up" and (arrangement.rows, arrangement.columns) == (2, 2)
    assert arrangement.cells == tuple(ref(mammogram, views[v]) for v in ("RCC", "LCC", "RMLO", "LMLO"))


def test_an_ultrasound_with_a_cine_loop_opens_on_the_loop_alone_playing(samples, tmp_path):
    cine = pydicom.dcmread(samples / US_CINE, stop_before_pixels=True)
    stills = [derived(samples / US_STILL, tmp_path / "us" / f"{n}.dcm", StudyInstanceUID=cine.StudyInstanceUID,
                      PatientID=cine.PatientID, SeriesInstanceUID=generate_uid(), SeriesNumber=n)
              for n in (1, 2)]   # two still images of the loop's study (derived copies of another US)
    (study,) = cached(tmp_path / "home", samples / US_CINE, *stills).values()
    (loop,) = [d for d in study.display_sets if d.is_multiframe]
    assert len(study.display_sets) == 3

    arrangement = choose(load_protocols(), study, [])

    assert arrangement.protocol == "US/XA cine"
    assert arrangement.cells == (ref(study, loop),)
    assert arrangement.options[0]["cine"] == "play"
    # The stills alone (the study before its loop arrived, say) are no cine study: the default shows both.
    stills_only = StudyInput(study.study, [d for d in study.display_sets if d is not loop])
    arrangement = choose(load_protocols(), stills_only, [])
    assert arrangement.protocol == DEFAULT and (arrangement.rows, arrangement.columns) == (1, 2)


# --- the user's protocols ----------------------------------------------------------------------


def test_a_broken_user_protocol_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    home = tmp_path / "home"
    folder = home / "hanging_protocols"
    folder.mkdir(parents=True)
    (folder / "truncated.json").write_text('{"name": "Half", "layout": {"rows": 1,', encoding="utf-8")
    bad_rule = {"name": "Typo", "layout": {"rows": 1, "columns": 1},
                "viewports": [{"select": [{"attribute": "SeriesDescripton", "matches": "t1"}]}]}
    (folder / "typo.json").write_text(json.dumps(bad_rule), encoding="utf-8")
    bad_regex = {"name": "Regex", "layout": {"rows": 1, "columns": 1},
                 "viewports": [{"select": [{"attribute": "SeriesDescription", "matches": "t1("}]}]}
    (folder / "regex.json").write_text(json.dumps(bad_regex), encoding="utf-8")
    (folder / "latin1.json").write_bytes(b'{"name": "Caf\xe9"}')
    good = {"name": "Mine", "layout": {"rows": 1, "columns": 1}, "viewports": [None]}
    (folder / "good.json").write_text(json.dumps(good), encoding="utf-8")

    with caplog.at_level(logging.WARNING):
        protocols = load_protocols(home)

    names = [p.name for p in protocols]
    assert "Mine" in names and "CT head" in names
    assert not {"Half", "Typo", "Regex", "Café"} & set(names)
    warnings = {Path(r.args[0]).name: str(r.args[1]) for r in caplog.records if r.name == hanging.__name__}
    assert set(warnings) == {"truncated.json", "typo.json", "regex.json", "latin1.json"}
    assert "SeriesDescripton" in warnings["typo.json"]
    assert "not a regular expression" in warnings["regex.json"]


def test_a_user_protocol_with_the_name_of_a_shipped_one_replaces_it(samples, tmp_path):
    home = tmp_path / "home"
    (head,) = cached(home, samples / CT_HEAD).values()
    scout, stack = head.display_sets
    mine = {"name": "ct head", "layout": {"rows": 1, "columns": 2},
            "match": [{"attribute": "Modality", "equals": "CT", "required": True}],
            "viewports": [{"select": [{"attribute": "orientation", "equals": "axial"}]},
                          {"select": [{"attribute": "is_localizer", "equals": True, "required": True}]}]}
    (home / "hanging_protocols").mkdir()
    (home / "hanging_protocols" / "head.json").write_text(json.dumps(mine), encoding="utf-8")

    protocols = load_protocols(home)

    (replaced,) = [p for p in protocols if p.name.casefold() == "ct head"]
    assert replaced.source == "user"
    arrangement = choose(protocols, head, [])
    assert arrangement.protocol == "ct head" and arrangement.cells == (ref(head, stack), ref(head, scout))


def test_an_arrangement_saved_as_a_protocol_opens_the_same_study_the_same_way(samples, tmp_path):
    home = tmp_path / "home"
    (head,) = cached(home, samples / CT_HEAD).values()
    scout, stack = head.display_sets
    # Not what CT head or the default would do: the scout, then the stack in two windows.
    cells = (ref(head, scout), ref(head, stack), ref(head, stack))

    protocol = protocol_from_arrangement("Head with scout", head, [], 1, 3, cells,
                                         options=[None, {"window": "CT Brain"}, {"window": "Bone"}])
    path = save_protocol(home, protocol)

    assert json.loads(path.read_text(encoding="utf-8"))["name"] == "Head with scout"
    arrangement = choose(load_protocols(home), head, [])
    assert arrangement.protocol == "Head with scout"
    assert arrangement.cells == cells
    assert arrangement.options == ({}, {"window": "CT Brain"}, {"window": "Bone"})
    # Saving again under that name replaces it rather than adding a second file.
    assert save_protocol(home, protocol) == path and len(list(path.parent.glob("*.json"))) == 1


def test_a_saved_comparison_with_the_prior_opens_the_same_way_again(radiographs, tmp_path):
    current, prior, older, later = radiographs
    cells = (ref(prior, prior.display_sets[0]), ref(current, current.display_sets[0]))   # prior on the left

    save_protocol(tmp_path / "home", protocol_from_arrangement("Prior left", current, [prior], 1, 2, cells))

    protocols = load_protocols(tmp_path / "home")
    assert choose(protocols, current, [later, older, prior]).cells == cells
    assert choose(protocols, current, [later]).protocol == DEFAULT    # no prior: the saved one does not apply


def test_a_saved_protocol_opens_the_next_study_of_that_kind_the_same_way(samples, tmp_path):
    """Saved on one patient's chest CT angiogram, used on another patient's, which has series of the
    same descriptions; not on an abdomen CT."""
    home = tmp_path / "home"
    studies = cached(home, samples / CHEST_CT, samples / OTHER_CHEST_CT, samples / ABDOMEN_CT)
    first, second = [s for s in studies.values() if s.study.StudyDescription == "CT CHEST PULMONARY ANGIO WITH IV CON"]

    def planes(study):
        return {d.orientation: d for d in study.display_sets}

    cells = tuple(ref(first, planes(first)[o]) for o in ("coronal", "sagittal", "axial")) + (None,)
    save_protocol(home, protocol_from_arrangement("Chest CTA planes", first, [], 2, 2, cells))
    protocols = load_protocols(home)

    arrangement = choose(protocols, second, [])

    assert second.study.PatientID != first.study.PatientID
    assert arrangement.protocol == "Chest CTA planes"
    assert arrangement.cells == tuple(ref(second, planes(second)[o]) for o in ("coronal", "sagittal", "axial")) + (None,)
    abdomen = by_description(studies, "CT ANGIO ABD AND PEL WWO IV CONT")
    assert choose(protocols, abdomen, []).protocol == DEFAULT
