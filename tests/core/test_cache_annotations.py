"""The viewer's annotations in the cache's state file: round trip, refusals in words, delete versus evict."""

from __future__ import annotations

import sqlite3

import pytest

from tests.core.test_cache import make_dicom
from workstation.core.cache import AnnotationRefused, Cache, CacheError

STUDY, OTHER = "1.2.3", "1.2.4"


def annotation(uid: str, study: str = STUDY, **extra) -> dict:
    return {"uid": uid, "StudyInstanceUID": study, "SeriesInstanceUID": f"{study}.1", "SOPInstanceUID": f"{study}.1.1",
            "frame": 1, "kind": "length", **extra}


@pytest.fixture
def cache(workstation_home):
    with Cache(workstation_home) as c:
        c.ingest_bytes(make_dicom(study=STUDY, series=f"{STUDY}.1", sop=f"{STUDY}.1.1"))
        c.ingest_bytes(make_dicom(study=OTHER, series=f"{OTHER}.1", sop=f"{OTHER}.1.1", patient_id="P2"))
        yield c


def test_annotations_round_trip_in_order_and_survive_reopening(cache, workstation_home):
    documents = [
        annotation("a1", points=[[10.5, 20.25], [30.0, 40.0]], label="Länge", mm=19.8),
        annotation("a2", kind="ellipse", frame=None, style={"colour": "#ff0", "width": 2}, nested=[{"x": [1, 2]}]),
        annotation("a3", kind="angle", points=((1, 2), (3, 4), (5, 6))),
    ]
    cache.save_annotations(STUDY, documents)
    cache.save_annotations(OTHER, [annotation("b1", OTHER)])
    expected = [*documents[:2], {**documents[2], "points": [[1, 2], [3, 4], [5, 6]]}]  # tuples come back as lists
    assert cache.annotations(STUDY) == expected
    assert cache.annotated_studies() == {STUDY: 3, OTHER: 1}
    cache.close()
    with Cache(workstation_home) as again:
        assert again.annotations(STUDY) == expected
        again.save_annotations(STUDY, [documents[1]])  # the whole set is replaced
        assert again.annotations(STUDY) == [documents[1]]
        again.save_annotations(STUDY, [])
        assert again.annotations(STUDY) == [] and again.annotated_studies() == {OTHER: 1}
        assert again.annotations("9.9") == []


@pytest.mark.parametrize(("documents", "words"), [
    ([annotation("a1", points={(1, 2)})], "annotation 1 (uid 'a1') of study 1.2.3 cannot be stored: "
                                          "it['points'] is a set, which JSON cannot hold"),
    ([annotation("a1"), annotation("a2", mm=float("nan"))], "annotation 2 (uid 'a2') of study 1.2.3 cannot be stored: "
                                                           "it['mm'] is nan, which JSON has no number for"),
    ([annotation("a1", style={1: "red"})], "it['style'] has the key 1, but JSON keys are text"),
    ([annotation("a1", points=[[0, 0], [1, object()]])], "it['points'][1][1] is a object, which JSON cannot hold"),
    ([annotation("a1", data=b"\x00")], "it['data'] is a bytes"),
    ([{"uid": "a1", "kind": "length"}], "annotation 1 (uid 'a1') of study 1.2.3 has no StudyInstanceUID, "
                                        "SeriesInstanceUID, SOPInstanceUID, frame"),
    ([annotation("a1", OTHER)], "annotation 1 (uid 'a1') belongs to study '1.2.4', not to 1.2.3"),
    ([annotation("a1"), annotation("a1")], "annotation 2 (uid 'a1') of study 1.2.3: two annotations have this uid"),
    ([annotation("")], "its uid must be non-empty text"),
    ([annotation("a1", frame="2")], "its frame must be a whole number or null"),
    ([annotation("a1", kind=None)], "its kind must be non-empty text"),
    (["a1"], "annotation 1 of study 1.2.3 is a str, not a document (dict)"),
    ({"a1": annotation("a1")}, "must be a list of documents, not a dict"),
])
def test_a_set_that_cannot_be_stored_as_given_is_refused_in_words_and_nothing_is_written(cache, documents, words):
    cache.save_annotations(STUDY, [annotation("kept")])
    with pytest.raises(AnnotationRefused) as refused:
        cache.save_annotations(STUDY, documents)
    assert words in str(refused.value)
    assert isinstance(refused.value, CacheError), "the CLI and the services show a CacheError's message as it is"
    assert cache.annotations(STUDY) == [annotation("kept")]


def test_an_annotation_uid_of_another_study_is_refused(cache):
    cache.save_annotations(OTHER, [annotation("shared", OTHER)])
    with pytest.raises(AnnotationRefused, match="annotation uid 'shared' is already used by study 1.2.4"):
        cache.save_annotations(STUDY, [annotation("mine"), annotation("shared")])
    assert cache.annotations(STUDY) == [] and cache.annotations(OTHER) == [annotation("shared", OTHER)]


def test_eviction_keeps_the_annotations_and_delete_removes_them(cache):
    cache.save_annotations(STUDY, [annotation("a1")])
    cache.save_annotations(OTHER, [annotation("b1", OTHER)])
    report = cache.evict(to_size=0)
    assert sorted(report.evicted_studies) == [STUDY, OTHER] and cache.studies() == []
    assert cache.annotated_studies() == {STUDY: 1, OTHER: 1}, "the study may come back from the PACS"
    cache.ingest_bytes(make_dicom(study=STUDY, series=f"{STUDY}.1", sop=f"{STUDY}.1.1"))  # it came back
    assert cache.annotations(STUDY) == [annotation("a1")]
    cache.delete(STUDY)
    assert cache.annotations(STUDY) == [] and cache.annotated_studies() == {OTHER: 1}
    cache.delete(OTHER)  # no longer in the cache, but its annotations are: deleting it removes them
    assert cache.annotated_studies() == {}
    with pytest.raises(CacheError, match="no study 1.2.4 in the cache"):
        cache.delete(OTHER)


def test_the_annotations_live_in_the_state_file_not_the_index(cache, workstation_home):
    cache.save_annotations(STUDY, [annotation("a1")])
    cache.close()
    with sqlite3.connect(workstation_home / "cache" / "state.sqlite") as state:
        assert state.execute("SELECT uid, StudyInstanceUID FROM annotations").fetchall() == [("a1", STUDY)]
    with sqlite3.connect(workstation_home / "cache" / "index.sqlite") as index:
        assert index.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'annotation%'").fetchone() == (0,)


def test_a_damaged_state_file_gives_back_what_can_still_be_read_of_the_annotations(cache, workstation_home):
    cache.save_annotations(STUDY, [annotation("a1"), annotation("a2", kind="angle")])
    cache.pin(STUDY)
    cache.close()
    path = workstation_home / "cache" / "state.sqlite"
    with sqlite3.connect(path) as state:
        state.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (page,) = state.execute("SELECT rootpage FROM sqlite_master WHERE name = 'studies'").fetchone()
        size = state.execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as f:  # the pins' page overwritten, as a bad sector would
        f.seek(size * (page - 1))
        f.write(b"\xa5" * size)
    with Cache(workstation_home) as again:
        assert again.annotations(STUDY) == [annotation("a1"), annotation("a2", kind="angle")]
        assert again.studies()[0].pinned or again.studies()[1].pinned, "the pin came back from the index"
    assert (workstation_home / "cache" / "state.damaged.sqlite").exists()
