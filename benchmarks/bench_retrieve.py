"""Retrieval by C-GET from a real Orthanc, the `workstation retrieve` command beside DCMTK's getscu, in one run.

Studies (loaded into an Orthanc of our own, TCP_NODELAY=1 as for every peer):
  one series   the 140-slice series of the Philips phantom study (dcm_qa_ct/In/Philips/S21570),
               `--series` it / getscu at SERIES level;
  two series   the whole phantom study (140 slices + 1 localizer, 141 instances).
Links: loopback (Orthanc on 127.0.0.1), and with root, Orthanc in a network namespace of this run
behind ../shared/tools/linkemu: LAN (1 Gbit/s, about 0.5 ms round trip) and WAN (100 Mbit/s, about
20 ms round trip).
Each run alternates the two tools, each a fresh process into a fresh folder: ours is the CLI
(`python -m workstation retrieve --json` with a fresh home, the node set up beforehand), theirs is
`getscu -S`. Figures per tool: transfer (ours: the `seconds` it reports, from the first association
request to the last commit; getscu: its whole run), whole process (wall time of the process) and
CPU-seconds (user + system of the process and its children, from the kernel's rusage), also per
received instance. Our modules are compiled to bytecode first, as an installed package is (this
environment sets PYTHONDONTWRITEBYTECODE, which otherwise recompiles them at every start).
Ratios: time = getscu / ours (> 1: we are faster), CPU = ours / getscu (< 1: we use less).

    sudo .venv/bin/python benchmarks/bench_retrieve.py [--runs 7] [--profiles loopback,lan,wan]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import ROOT, SAMPLES, median, require_samples, table

sys.path.insert(0, str(ROOT))

from tests.peers import (  # noqa: E402
    ORTHANC_BIN,
    WORKSTATION_AET,
    OrthancPeer,
    _die_with_the_tests,
    dcmtk,
    peer_env,
    running,
    stop_process,
    wait_until,
)

STUDY = SAMPLES / "dcm_qa_ct" / "In" / "Philips" / "S21570"
LINK = ROOT.parent / "shared" / "tools" / "linkemu" / "link.py"
NAMESPACE = "wsbench-retr"
"""Names and addresses of this benchmark's own (other benchmarks may run a link of their own)."""
HOST_DEV, NS_DEV = "wsbr0", "wsbr1"
HOST_ADDR, NS_ADDR = "10.200.213.1", "10.200.213.2"
PROFILES = {
    "loopback": None,
    "lan": "0.00019 1000000000 0.1",   # one-way delay s, rate bit/s, queue limit s (README: 0.52 ms round trip)
    "wan": "0.010 100000000 0.1",
}


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, CPU-seconds of the process and the children it waited for, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def ours(host: str, port: int, study: str, series: list[str], work: Path, associations: int) -> dict:
    home = Path(tempfile.mkdtemp(dir=work))
    try:
        settings = {"schema_version": 2, "ae_title": WORKSTATION_AET, "retrieve_associations": associations,
                    "nodes": [{"name": "pacs", "aet": "ORTHANC", "host": host, "port": port}]}
        (home / "settings.json").write_text(json.dumps(settings))
        cmd = [sys.executable, "-m", "workstation", "--home", str(home), "retrieve", "pacs", "--study", study,
               "--json"] + [a for s in series for a in ("--series", s)]
        wall, cpu, out = run_measured(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})
        report = json.loads(out)
        if report["missing"] or report["errors"]:
            raise RuntimeError(f"retrieval incomplete: {report}")
        return {"transfer": report["seconds"], "whole": wall, "cpu": cpu, "completed": report["completed"]}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def getscu(host: str, port: int, study: str, series: list[str], work: Path) -> dict:
    out = Path(tempfile.mkdtemp(dir=work))
    try:
        level = "SERIES" if series else "STUDY"
        keys = ["-k", f"QueryRetrieveLevel={level}", "-k", f"StudyInstanceUID={study}"]
        for s in series:
            keys += ["-k", f"SeriesInstanceUID={s}"]
        wall, cpu, _ = run_measured([dcmtk("getscu"), "-S", "-aet", WORKSTATION_AET, "-aec", "ORTHANC", host, str(port),
                                     "-od", str(out), *keys], env=peer_env())
        return {"transfer": wall, "whole": wall, "cpu": cpu, "completed": len(list(out.iterdir()))}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def round_trip(host: str, port: int, tries: int = 15) -> float:
    """Median seconds of a TCP connect (SYN to SYN-ACK: one round trip)."""
    times = []
    for _ in range(tries):
        started = time.perf_counter()
        with socket.create_connection((host, port), timeout=5):
            times.append(time.perf_counter() - started)
    return median(times)


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@contextlib.contextmanager
def emulated_link(work: Path):
    """The namespace and the link emulator between it and us; yields the control file's path and the emulator."""
    subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True)   # a leftover of an interrupted run
    sh("ip", "netns", "add", NAMESPACE)
    ctl = work / "link.ctl"
    ctl.write_text("0 0 0.1\n")
    link = subprocess.Popen([sys.executable, str(LINK), HOST_DEV, NAMESPACE, NS_DEV, str(ctl)],
                            preexec_fn=_die_with_the_tests)
    try:
        wait_until(lambda: Path(f"/sys/class/net/{HOST_DEV}").exists(), 5, "link emulator", link)
        sh("ip", "addr", "add", f"{HOST_ADDR}/30", "dev", HOST_DEV)
        sh("ip", "link", "set", HOST_DEV, "up")
        ns = ("ip", "netns", "exec", NAMESPACE)
        sh(*ns, "ip", "addr", "add", f"{NS_ADDR}/30", "dev", NS_DEV)
        sh(*ns, "ip", "link", "set", NS_DEV, "up")
        sh(*ns, "ip", "link", "set", "lo", "up")
        yield ctl, link
    finally:
        stop_process(link)
        subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True)


def set_profile(ctl: Path, link: subprocess.Popen, profile: str) -> None:
    ctl.write_text(PROFILES[profile] + "\n")
    applied = Path(str(ctl) + ".applied")
    applied.unlink(missing_ok=True)
    link.send_signal(signal.SIGHUP)
    wait_until(applied.exists, 5, "link profile", link)


@contextlib.contextmanager
def orthanc_in_namespace(peer: OrthancPeer):
    """The same Orthanc (configuration and storage) started inside the namespace."""
    cfg = peer.workdir / "orthanc.json"
    cfg.write_text(json.dumps(peer.config(), indent=2))
    with open(peer.workdir / "orthanc-ns.log", "wb") as log:
        proc = subprocess.Popen(["ip", "netns", "exec", NAMESPACE, ORTHANC_BIN, str(cfg)], stdout=log,
                                stderr=subprocess.STDOUT, env=peer_env(), start_new_session=True,
                                preexec_fn=_die_with_the_tests)
    try:
        wait_until(lambda: _echo(NS_ADDR, peer.port), 30, "Orthanc in the namespace", proc)
        yield
    finally:
        stop_process(proc)


def _echo(host: str, port: int) -> bool:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=WORKSTATION_AET)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 2
    assoc = ae.associate(host, port, ae_title="ORTHANC")
    if not assoc.is_established:
        return False
    assoc.release()
    return True


def measure(profile: str, host: str, port: int, cases, runs: int, associations: int, work: Path) -> list[tuple]:
    rows = []
    for name, study, series, count in cases:
        figures: dict[str, list[dict]] = {"ours": [], "getscu": []}
        for run in range(runs):
            # Alternate which tool goes first so that neither always meets a warm PACS.
            order = ("ours", "getscu") if run % 2 == 0 else ("getscu", "ours")
            for tool in order:
                result = (ours(host, port, study, series, work, associations) if tool == "ours"
                          else getscu(host, port, study, series, work))
                if result["completed"] != count:
                    raise RuntimeError(f"{tool} retrieved {result['completed']} of {count} ({profile}, {name})")
                figures[tool].append(result)
        med = {tool: {key: median([r[key] for r in results]) for key in ("transfer", "whole", "cpu")}
               for tool, results in figures.items()}
        o, g = med["ours"], med["getscu"]
        rows.append((profile, name, f"{o['transfer']:.3f}", f"{o['whole']:.3f}", f"{g['whole']:.3f}",
                     f"{g['whole'] / o['transfer']:.2f}x", f"{g['whole'] / o['whole']:.2f}x",
                     f"{o['cpu']:.2f}", f"{g['cpu']:.2f}", f"{o['cpu'] / g['cpu']:.1f}x",
                     f"{o['cpu'] / count * 1000:.1f} / {g['cpu'] / count * 1000:.1f}"))
        print("  ".join(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--associations", type=int, default=4, help="the retrieve-associations setting")
    parser.add_argument("--profiles", default="loopback,lan,wan")
    args = parser.parse_args()
    profiles = args.profiles.split(",")
    require_samples()
    if not os.path.exists(dcmtk("getscu")):
        sys.exit("getscu is missing: install the Debian package dcmtk")
    emulated = [p for p in profiles if p != "loopback"]
    if emulated and os.geteuid() != 0:
        print(f"not root: the {', '.join(emulated)} profile(s) need a network namespace; loopback only")
        profiles = [p for p in profiles if p == "loopback"]
    from workstation.core.cache import QueryFilter
    from workstation.core.model.node import Node
    from workstation.core.net import transport
    from workstation.core.net.find import find

    transport.install()
    compileall.compile_dir(ROOT / "workstation", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="bench-retrieve-"))
    rows: list[tuple] = []
    load = os.getloadavg()[0]
    try:
        peer = OrthancPeer(work / "orthanc")
        with running(peer):
            loaded = peer.upload(p for p in sorted(STUDY.rglob("*")) if p.is_file())
            node = Node("pacs", peer.aet, "127.0.0.1", peer.port)
            phantom = next(s for s in find(node, WORKSTATION_AET, "study", QueryFilter(PatientID="PLASTIC"))
                           if s.NumberOfStudyRelatedInstances == 141).StudyInstanceUID
            slices = max(find(node, WORKSTATION_AET, "series", QueryFilter(StudyInstanceUID=phantom)),
                         key=lambda s: s.NumberOfSeriesRelatedInstances).SeriesInstanceUID
            cases = [("one series (140)", phantom, [slices], 140), ("two series (141)", phantom, [], 141)]
            print(f"loaded {loaded} instances; load average {load:.2f} on {os.cpu_count()} cores")
            print("profile  study  ours-transfer  ours-whole  getscu  transfer-ratio  whole-ratio  "
                  "ours-CPU  getscu-CPU  CPU-ratio  CPU-ms-per-instance")
            if "loopback" in profiles:
                rows += measure("loopback", "127.0.0.1", peer.port, cases, args.runs, args.associations, work)
        if emulated and os.geteuid() == 0:
            with emulated_link(work) as (ctl, link), orthanc_in_namespace(peer):
                for profile in emulated:
                    set_profile(ctl, link, profile)
                    rtt = round_trip(NS_ADDR, peer.port)
                    print(f"{profile}: TCP connect round trip {rtt * 1000:.2f} ms")
                    rows += measure(profile, NS_ADDR, peer.port, cases, args.runs, args.associations, work)
        print(f"\nmedians of {args.runs} alternating runs, retrieve-associations {args.associations}; "
              f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after\n"
              "time ratio = getscu whole run / ours (> 1: faster); CPU ratio = ours / getscu\n")
        print(table(rows, ("link", "study", "ours transfer s", "ours whole s", "getscu s", "transfer ratio",
                           "whole ratio", "ours CPU s", "getscu CPU s", "CPU ratio", "CPU ms/instance ours / getscu")))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
