"""Study searches over a cache index of 100,000 instances: median times, target under 50 ms each.

The index is synthesised through the cache's own row code (`rows.add_row`, the function every
ingest uses), 2,000 studies x 5 series x 10 instances, without writing DICOM files: this measures the
index and its queries, not the file store. Each search runs many times; the median is printed.

    .venv/bin/python benchmarks/bench_search.py [--studies N] [--runs N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workstation.core.cache import Cache, QueryFilter, rows  # noqa: E402
from workstation.core.cache.files import relative_path  # noqa: E402
from workstation.core.cache.parse import Parsed  # noqa: E402

FAMILY = ["SMITH", "JONES", "GARCIA", "MÜLLER", "DUPONT", "ROSSI", "TANAKA", "IVANOV", "NGUYEN", "KOWALSKI",
          "BROWN", "SILVA", "KIM", "OKAFOR", "JOHANSSON", "LEE", "MARTIN", "HASSAN", "COHEN", "SCHMIDT"]
GIVEN = ["ANNA", "JOHN", "MARIA", "PETER", "LI", "SARA", "OMAR", "EVA", "PAUL", "YUKI"]
MODALITIES = ["CT", "MR", "US", "CR", "DX", "PT", "NM", "SR"]
DESCRIPTIONS = ["CT CHEST W CONTRAST", "MR BRAIN", "US ABDOMEN", "CHEST PA LAT", "PET CT WHOLE BODY",
                "MR KNEE LEFT", "CT HEAD", "XR HAND", "MR LUMBAR SPINE", "CT ABDOMEN PELVIS"]


def build(cache: Cache, n_studies: int, series_per_study: int, per_series: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    conn = cache._conn
    conn.execute("BEGIN")
    for s in range(n_studies):
        study = f"1.2.826.0.1.3680043.10.1.{s + 1}"
        patient = rng.randrange(n_studies // 2 + 1)
        name = f"{FAMILY[patient % len(FAMILY)]}^{GIVEN[(patient // len(FAMILY)) % len(GIVEN)]}^{patient}"
        date = f"{rng.randrange(2000, 2025)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        desc = rng.choice(DESCRIPTIONS)
        for k in range(series_per_study):
            series = f"{study}.{k + 1}"
            modality = rng.choice(MODALITIES)
            for i in range(per_series):
                sop = f"{series}.{i + 1}"
                p = Parsed(
                    data=b"", sop=sop, study=study, series=series, size=500_000,
                    patient={"PatientID": f"P{patient:07d}", "PatientName": name, "PatientBirthDate": "19600101", "PatientSex": "F"},
                    study_attrs={"StudyDate": date, "StudyTime": "101500", "StudyDescription": desc,
                                 "AccessionNumber": f"ACC{s:07d}", "ReferringPhysicianName": "REF^DOC", "StudyID": str(s)},
                    series_attrs={"Modality": modality, "SeriesNumber": k + 1, "SeriesDescription": f"{modality} {k + 1}",
                                  "BodyPartExamined": "CHEST", "SeriesDate": date, "SeriesTime": "101500"},
                    instance_attrs={"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "InstanceNumber": i + 1, "NumberOfFrames": 1,
                                    "Rows": 512, "Columns": 512, "TransferSyntaxUID": "1.2.840.10008.1.2.1"},
                )
                rows.add_row(conn, p, relative_path(study, series, sop), time.time())
    conn.execute("COMMIT")
    conn.execute("ANALYZE")


def median_ms(fn, runs: int) -> tuple[float, int]:
    result = fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), len(result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=51)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp, Cache(Path(tmp)) as cache:
        t0 = time.perf_counter()
        build(cache, args.studies, 5, 10)
        n_inst = cache._conn.execute("SELECT count(*) FROM instances").fetchone()[0]
        print(f"index: {args.studies} studies, {n_inst} instances, built in {time.perf_counter() - t0:.1f} s (rows only, no files)")
        some_series = cache.series("1.2.826.0.1.3680043.10.1.1000")[0].SeriesInstanceUID
        searches = [
            ("all studies, newest 100", lambda: cache.studies(limit=100)),
            ("all studies (no limit)", lambda: cache.studies()),
            ("name wildcard SMITH*", lambda: cache.studies(QueryFilter(PatientName="SMITH*"))),
            ("name wildcard *anna*", lambda: cache.studies(QueryFilter(PatientName="*anna*"))),
            ("name exact", lambda: cache.studies(QueryFilter(PatientName="SMITH^ANNA^0"))),
            ("patient ID exact", lambda: cache.studies(QueryFilter(PatientID="P0000420"))),
            ("patient ID wildcard P00001*", lambda: cache.studies(QueryFilter(PatientID="P00001*"))),
            ("accession exact", lambda: cache.studies(QueryFilter(AccessionNumber="ACC0001234"))),
            ("date range 2010-2012", lambda: cache.studies(QueryFilter(StudyDate="20100101-20121231"))),
            ("modality MR", lambda: cache.studies(QueryFilter(Modality="MR"))),
            ("description *BRAIN*", lambda: cache.studies(QueryFilter(StudyDescription="*brain*"))),
            ("free text 'müller'", lambda: cache.studies(QueryFilter(text="müller"))),
            ("name + date + modality", lambda: cache.studies(QueryFilter(PatientName="S*", StudyDate="20150101-", Modality="CT"))),
            ("patient level S*", lambda: cache.query("patient", QueryFilter(PatientName="S*"))),
            ("series level, modality PT", lambda: cache.query("series", QueryFilter(Modality="PT"))),
            ("instances of one series", lambda: cache.instances(some_series)),
            ("has_instances(1000 UIDs)", lambda: cache.has_instances(f"1.2.826.0.1.3680043.10.1.{s}.1.1" for s in range(1, 1001))),
        ]
        print(f"median of {args.runs} runs; target < 50 ms")
        print(f"{'search':<30} {'results':>8} {'median ms':>10}  ok")
        worst = 0.0
        for label, fn in searches:
            ms, n = median_ms(fn, args.runs)
            worst = max(worst, ms)
            print(f"{label:<30} {n:>8} {ms:>10.2f}  {'yes' if ms < 50 else 'NO'}")
        print(f"slowest median: {worst:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
