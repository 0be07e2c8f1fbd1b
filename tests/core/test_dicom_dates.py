"""DA and TM values read in every form files write them (DICOM and ACR-NEMA), kept one way, shown one way."""

from __future__ import annotations

from workstation.core.dicom.dates import dicom_date, dicom_time, iso_date, iso_time, parse_date


def test_dates_in_every_form_are_one_date():
    for written in ("20150206", "2015-02-06", "2015.02.06", " 2015.02.06 ", "2015/02/06"):
        assert parse_date(written) == "20150206", written
        assert iso_date(written) == "2015-02-06", written
    assert dicom_date("1995.05.01") == "19950501"


def test_what_is_not_a_date_is_kept_as_it_is():
    for written in ("", "2015", "20151301", "20150230", "yesterday", "2015-02-06-2015-02-07"):
        assert parse_date(written) is None, written
    assert iso_date("20150230") == "20150230" and dicom_date(" unknown ") == "unknown"


def test_times_in_dicom_and_acr_nema_forms():
    assert dicom_time("15:26:10") == "152610" and dicom_time("152610.770000") == "152610.770000"
    assert iso_time("152610.77") == "15:26" and iso_time("15:26:10") == "15:26"
    assert iso_time("1526") == "15:26" and iso_time("15") == "15:00"
    assert iso_time("15:26:10", seconds=True) == "15:26:10"
    assert iso_time("") == "" and iso_time("2561") == "" and dicom_time("noon") == "noon"
