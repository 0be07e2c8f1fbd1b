"""Retrieval from a real Orthanc into the cache, ours beside DCMTK, in one run.

Studies (loaded into an Orthanc of our own, TCP_NODELAY=1 as for every peer):
  one series   the 140-slice series of the Philips phantom study (dcm_qa_ct/In/Philips/S21570),
               retrieved with series_uids=[it] / getscu at SERIES level;
  two series   the whole phantom study (140 slices + 1 localizer, 141 instances);
  four series  a study written for this run: the 140 slices copied into 4 series with fresh UIDs.
Ours: `retrieve()` by C-GET (in worker processes, the default, and on threads of one process,
the earlier design) and by C-MOVE (to a Storage SCP with receiver processes, the default, and on
threads) into a fresh cache per run; `seconds` of its report (first
association request of the plan to the last instance committed) and the latency from the first
instance's arrival to its commit. The worker processes are started before the first run and
kept, as the GUI keeps them. DCMTK: `getscu -S` writing to a folder, and `movescu`
to a `storescp` started once, both with TCP_NODELAY=1, each tool's whole run timed.
Ratio = DCMTK time / our time (>= 1.0: we are at least as fast).

    .venv/bin/python benchmarks/bench_retrieve.py [--runs 5] [--associations 4]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import ROOT, SAMPLES, median, require_samples, table

sys.path.insert(0, str(ROOT))

from tests.peers import WORKSTATION_AET, OrthancPeer, free_port, peer_env, running, stop_process  # noqa: E402
from workstation.core.cache import Cache, QueryFilter  # noqa: E402
from workstation.core.model.node import Node  # noqa: E402
from workstation.core.net.fetch_pool import shared_pool  # noqa: E402
from workstation.core.net.find import find  # noqa: E402
from workstation.core.net.retrieve import retrieve  # noqa: E402
from workstation.core.net.storage_scp import StorageServer, default_receivers  # noqa: E402

STUDY = SAMPLES / "dcm_qa_ct" / "In" / "Philips" / "S21570"
DCMTK_AET = "DCMTKSCP"


def four_series_copy(out: Path) -> list[Path]:
    """The 140 phantom slices as 4 series of one new study, fresh UIDs, written with pydicom."""
    import pydicom
    from pydicom.uid import generate_uid

    slices = sorted(p for p in (STUDY / "S2020").rglob("*") if p.is_file())
    study = generate_uid()
    paths = []
    for number in range(1, 5):
        series = generate_uid()
        for path in slices:
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID = study
            ds.SeriesInstanceUID = series
            ds.SeriesNumber = number
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.PatientID = "BENCH4"
            target = out / f"s{number}_{path.name}.dcm"
            ds.save_as(target)
            paths.append(target)
    return paths


def ours(node: Node, study: str, series: list[str] | None, method: str, associations: int,
         scp_port: int, work: Path, processes: bool = True) -> tuple[float, float, int]:
    """(seconds, first arrival-to-commit latency, completed); the Storage SCP for C-MOVE runs before and after."""
    home = Path(tempfile.mkdtemp(dir=work))
    try:
        with Cache(home) as cache:
            server = StorageServer(cache, WORKSTATION_AET, scp_port, host="127.0.0.1",
                                   receivers=default_receivers() if processes else 0) if method == "move" else None
            if server is not None:
                server.start()
            try:
                report = retrieve(node, WORKSTATION_AET, cache, study, series_uids=series, method=method,
                                  associations=associations, server=server, processes=processes)
            finally:
                if server is not None:
                    server.stop()
        if report.errors or report.missing:
            raise RuntimeError(f"retrieval incomplete: {report.to_json()}")
        return report.seconds, getattr(report, "first_commit_latency", None) or 0.0, report.completed
    finally:
        shutil.rmtree(home, ignore_errors=True)


def keys(study: str, series: list[str] | None) -> list[str]:
    level = "SERIES" if series else "STUDY"
    out = ["-k", f"QueryRetrieveLevel={level}", "-k", f"StudyInstanceUID={study}"]
    if series:
        out += ["-k", f"SeriesInstanceUID={series[0]}"]
    return out


def getscu(orthanc: OrthancPeer, study: str, series: list[str] | None, work: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=work))
    try:
        started = time.perf_counter()
        subprocess.run(["getscu", "-S", "-aet", WORKSTATION_AET, "-aec", orthanc.aet, "127.0.0.1", str(orthanc.port),
                        "-od", str(out), *keys(study, series)], env=peer_env(), check=True, capture_output=True)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(out, ignore_errors=True)


def movescu(orthanc: OrthancPeer, study: str, series: list[str] | None, scp_dir: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["movescu", "-S", "-aet", WORKSTATION_AET, "-aec", orthanc.aet, "-aem", DCMTK_AET, "127.0.0.1",
                    str(orthanc.port), *keys(study, series)], env=peer_env(), check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    for path in scp_dir.iterdir():
        path.unlink()
    return elapsed


def main() -> None:
    from workstation.core.net import transport

    transport.install()   # as the CLI and the window do
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--associations", type=int, default=4)
    args = parser.parse_args()
    require_samples()
    for tool in ("getscu", "movescu", "storescp"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: install the Debian package dcmtk")
    work = Path(tempfile.mkdtemp(prefix="bench-retrieve-"))
    storescp = None
    try:
        with running(OrthancPeer(work / "orthanc")) as orthanc:
            started = time.perf_counter()
            loaded = orthanc.upload(p for p in sorted(STUDY.rglob("*")) if p.is_file())
            copies = work / "copies"
            copies.mkdir()
            loaded += orthanc.upload(four_series_copy(copies))
            print(f"loaded {loaded} instances into Orthanc in {time.perf_counter() - started:.1f} s")
            node = Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=5, network_timeout=30)
            phantom = next(s for s in find(node, WORKSTATION_AET, "study", QueryFilter(PatientID="PLASTIC"))
                           if s.NumberOfStudyRelatedInstances == 141).StudyInstanceUID
            slices = max(find(node, WORKSTATION_AET, "series", QueryFilter(StudyInstanceUID=phantom)),
                         key=lambda s: s.NumberOfSeriesRelatedInstances).SeriesInstanceUID
            four = next(iter(find(node, WORKSTATION_AET, "study", QueryFilter(PatientID="BENCH4")))).StudyInstanceUID

            scp_port = free_port()
            scp_dir = work / "storescp"
            scp_dir.mkdir()
            orthanc.add_modality("dcmtk", DCMTK_AET, "127.0.0.1", scp_port)
            storescp = subprocess.Popen(["storescp", "-aet", DCMTK_AET, "-od", str(scp_dir), str(scp_port)],
                                        env=peer_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)

            cases = [("one series (140)", phantom, [slices], 140), ("two series (141)", phantom, None, 141),
                     ("four series (560)", four, None, 560)]
            shared_pool(args.associations).prestart()
            rows = []
            latencies = []
            variants = {"get": ("get", True), "get, threads": ("get", False), "move": ("move", True),
                        "move, threads": ("move", False)}
            for name, study, series, count in cases:
                times: dict[str, list[float]] = {key: [] for key in (*variants, "getscu", "movescu")}
                for _ in range(args.runs):
                    for key, (method, processes) in variants.items():
                        seconds, latency, completed = ours(node, study, series, method, args.associations,
                                                           orthanc.workstation_port, work, processes)
                        assert completed == count, (name, key, completed)
                        times[key].append(seconds)
                        latencies.append(latency)
                    times["getscu"].append(getscu(orthanc, study, series, work))
                    times["movescu"].append(movescu(orthanc, study, series, scp_dir))
                for key, theirs_key in (("get", "getscu"), ("get, threads", "getscu"), ("move", "movescu"),
                                        ("move, threads", "movescu")):
                    mine, theirs = median(times[key]), median(times[theirs_key])
                    rows.append((name, f"C-{key.upper()}", f"{mine:.3f}", f"{theirs_key} {theirs:.3f}",
                                 f"{theirs / mine:.2f}x"))
            print(f"\nmedians of {args.runs} runs, {args.associations} associations; ratio = DCMTK / ours\n")
            print(table(rows, ("study", "ours", "ours s", "DCMTK s", "ratio")))
            print(f"\nfirst instance, arrival to commit: median {median(latencies) * 1000:.1f} ms, "
                  f"worst {max(latencies) * 1000:.1f} ms (target < 1000 ms)")
    finally:
        if storescp is not None:
            stop_process(storescp)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
