"""Study-level C-FIND returning 5,000 studies from a real Orthanc: ours beside findscu, in one run.

Orthanc (TCP_NODELAY=1) is loaded with 5,000 one-instance studies written for the run (8x8 pixels,
distinct patients, names and dates), posted to its REST API once (the load time is printed).
Ours: `workstation.core.net.find.find` at study level consumed fully, and the times to its first
record and to its first 50; findscu: `findscu -S` at STUDY level with the same return keys, its
whole run, and (a separate run with -v, unbuffered) the time to its first response: how long
Orthanc itself takes before it answers at all, which bounds "first rows" for any client.
Ratio = findscu time / ours (>= 1/1.2 = 0.83 meets "at most 1.2x findscu").

    .venv/bin/python benchmarks/bench_find.py [--runs 5] [--studies 5000]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _util import ROOT, median, table

sys.path.insert(0, str(ROOT))

from tests.peers import WORKSTATION_AET, OrthancPeer, dcmtk, peer_env, running  # noqa: E402
from workstation.core.cache import QueryFilter  # noqa: E402
from workstation.core.model.node import Node  # noqa: E402
from workstation.core.net.find import STUDY_KEYS, find  # noqa: E402


def tiny_study(n: int) -> bytes:
    """One 8x8 CT image in a study of its own, as Part-10 bytes."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = f"P{n:05d}"
    ds.PatientName = f"Bench^Patient{n:05d}"
    ds.PatientBirthDate = f"19{40 + n % 60:02d}0{1 + n % 9}1{n % 9}"
    ds.PatientSex = "MF"[n % 2]
    ds.StudyDate = f"20{10 + n % 15:02d}{1 + n % 12:02d}{1 + n % 28:02d}"
    ds.StudyTime = "101010"
    ds.StudyDescription = f"Bench study {n}"
    ds.AccessionNumber = f"A{n:06d}"
    ds.ReferringPhysicianName = "Ref^Doc"
    ds.StudyID = str(n)
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(128)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def ours(node: Node) -> tuple[float, float, float, int]:
    """(seconds to the first record, to the 50th, to the last, records)."""
    started = time.perf_counter()
    first = fiftieth = 0.0
    count = 0
    for _ in find(node, WORKSTATION_AET, "study", QueryFilter(), limit=1_000_000):
        count += 1
        if count == 1:
            first = time.perf_counter() - started
        if count == 50:
            fiftieth = time.perf_counter() - started
    return first, fiftieth, time.perf_counter() - started, count


def _findscu_args(orthanc: OrthancPeer, verbose: bool) -> list[str]:
    keys = ["-k", "QueryRetrieveLevel=STUDY"]
    for key in STUDY_KEYS:
        keys += ["-k", key]
    return [dcmtk("findscu"), *(["-v"] if verbose else []), "-S", "-aet", WORKSTATION_AET, "-aec", orthanc.aet,
            "127.0.0.1", str(orthanc.port), *keys]


def findscu(orthanc: OrthancPeer) -> float:
    started = time.perf_counter()
    subprocess.run(_findscu_args(orthanc, False), env=peer_env(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def findscu_first_response(orthanc: OrthancPeer) -> float:
    """Seconds until findscu logs the first pending response (its output unbuffered)."""
    started = time.perf_counter()
    with subprocess.Popen(["stdbuf", "-o0", "-e0", *_findscu_args(orthanc, True)], env=peer_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        first = 0.0
        for line in proc.stdout:
            if not first and "Find Response: 1 (Pending)" in line:
                first = time.perf_counter() - started
    return first


def main() -> None:
    from workstation.core.net import transport

    transport.install()   # as the CLI and the window do
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--studies", type=int, default=5000)
    args = parser.parse_args()
    if not os.path.exists(dcmtk("findscu")):
        sys.exit("findscu is missing: install the Debian package dcmtk")
    work = Path(tempfile.mkdtemp(prefix="bench-find-"))
    try:
        with running(OrthancPeer(work / "orthanc")) as orthanc:
            started = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda n: orthanc.rest("POST", "/instances", tiny_study(n)), range(args.studies)))
            print(f"loaded {args.studies} studies into Orthanc in {time.perf_counter() - started:.1f} s")
            node = Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=5, network_timeout=60)
            firsts, fifties, wholes, theirs, their_firsts = [], [], [], [], []
            for _ in range(args.runs):
                first, fiftieth, whole, count = ours(node)
                if count != args.studies:
                    raise RuntimeError(f"ours found {count} studies, not {args.studies}")
                firsts.append(first)
                fifties.append(fiftieth)
                wholes.append(whole)
                theirs.append(findscu(orthanc))
                their_firsts.append(findscu_first_response(orthanc))
            mine, reference = median(wholes), median(theirs)
            print(f"\nmedians of {args.runs} runs; ratio = findscu / ours\n")
            print(table([
                (f"whole list ({args.studies})", f"{mine:.3f}", f"{reference:.3f}", f"{reference / mine:.2f}x",
                 "ours <= 1.2x findscu" + (" met" if mine <= 1.2 * reference else " NOT met")),
                ("first row", f"{median(firsts):.3f}", f"{median(their_firsts):.3f}",
                 f"{median(their_firsts) / median(firsts):.2f}x", "(Orthanc answers nothing before it has all)"),
                ("first 50 rows", f"{median(fifties):.3f}", "", "",
                 "< 0.300 s" + (" met" if median(fifties) < 0.3 else " NOT met")),
            ], ("C-FIND, study level", "ours s", "findscu s", "ratio", "target")))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
