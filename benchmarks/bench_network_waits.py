"""Network waits the tests no longer time: each beside an anchor, medians of several runs, ratio = ours / anchor.

  echo      echo() to a real Orthanc (association + C-ECHO + release) vs DCMTK echoscu's whole run
  TLS echo  echo() over TLS with a client certificate to a pynetdicom SCP vs plain echo() to the same kind of SCP
  refused   echo() to a closed loopback port until ConnectionFailed vs a bare socket.connect being refused
  quiet     CPU share of one process holding 3 open, quiet associations (to Orthanc, and to and from our own
            Storage SCP) over 1 s, with the transport tuning vs pynetdicom as shipped (each a fresh process)
  push      storescu of the 28 GE CT files to `workstation listen` vs to DCMTK storescp
Every peer and DCMTK tool runs with TCP_NODELAY=1.

    .venv/bin/python benchmarks/bench_network_waits.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import ROOT, SAMPLES, median, require_samples, table, timed

sys.path.insert(0, str(ROOT))

from tests.peers import WORKSTATION_AET, OrthancPeer, c_echo, dcmtk, free_port, peer_env, running, wait_until  # noqa: E402
from workstation.core.model.node import Node  # noqa: E402
from workstation.core.net.association import ConnectionFailed  # noqa: E402
from workstation.core.net.echo import echo  # noqa: E402

GE = SAMPLES / "dcm_qa_ct" / "In" / "GE"


def row(name: str, ours: list[float], anchor_name: str, anchor: list[float], unit: str = "ms") -> tuple[str, ...]:
    scale = 1000.0 if unit == "ms" else 100.0
    o, a = median(ours), median(anchor)
    return (name, f"{o * scale:.3g} {unit}", anchor_name, f"{a * scale:.3g} {unit}", f"{o / a:.3g}" if a else "-")


def bench_echo(orthanc: OrthancPeer, runs: int) -> tuple[str, ...]:
    node = Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=3, network_timeout=10)
    command = [dcmtk("echoscu"), "-aet", WORKSTATION_AET, "-aec", orthanc.aet, "127.0.0.1", str(orthanc.port)]
    echo(node, WORKSTATION_AET)
    ours = timed(lambda: echo(node, WORKSTATION_AET), runs)
    theirs = timed(lambda: subprocess.run(command, check=True, env=peer_env(), capture_output=True), runs)
    return row("echo()", ours, "echoscu", theirs)


def _pki(folder: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bench-ca",
            "-keyout", "ca.key", "-out", "ca.pem")
    for name in ("server", "client"):
        (folder / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext")


def bench_tls(work: Path, runs: int) -> tuple[str, ...]:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    _pki(work)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(work / "ca.pem"))
    context.load_cert_chain(str(work / "server.pem"), str(work / "server.key"))
    context.verify_mode = ssl.CERT_REQUIRED
    servers, nodes = [], []
    for tls in (True, False):
        ae = AE(ae_title="SCP")
        ae.add_supported_context(Verification)
        port = free_port()
        servers.append(ae.start_server(("127.0.0.1", port), block=False, ssl_context=context if tls else None))
        extra = dict(tls_ca=str(work / "ca.pem"), tls_cert=str(work / "client.pem"),
                     tls_key=str(work / "client.key")) if tls else {}
        nodes.append(Node("scp", "SCP", "127.0.0.1", port, connect_timeout=3, **extra))
    try:
        for node in nodes:
            echo(node, WORKSTATION_AET)
        secure = timed(lambda: echo(nodes[0], WORKSTATION_AET), runs)
        plain = timed(lambda: echo(nodes[1], WORKSTATION_AET), runs)
    finally:
        for server in servers:
            server.shutdown()
    return row("echo() over TLS", secure, "plain echo()", plain)


def bench_refused(runs: int) -> tuple[str, ...]:
    port = free_port()
    closed = Node("nowhere", "ANY", "127.0.0.1", port, connect_timeout=3)

    def ours() -> None:
        try:
            echo(closed, WORKSTATION_AET)
        except ConnectionFailed:
            return
        raise RuntimeError("the closed port answered")

    def bare() -> None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=3).close()
        except ConnectionRefusedError:
            return
        raise RuntimeError("the closed port answered")

    return row("refused, echo()", timed(ours, runs), "socket.connect", timed(bare, runs))


def quiet_share(aet: str, port: int, tuned: bool) -> float:
    """In a fresh process: this process's CPU time per wall second with 3 quiet associations open."""
    from pynetdicom.sop_class import Verification

    from workstation.core.cache import Cache
    from workstation.core.net import transport
    from workstation.core.net.association import associate
    from workstation.core.net.storage_scp import StorageServer

    if tuned:
        transport.install()
    node = Node("pacs", aet, "127.0.0.1", port, connect_timeout=3, network_timeout=10)
    own_port = free_port()
    own = Node("self", "WSSCP", "127.0.0.1", own_port, connect_timeout=3, network_timeout=10)
    with tempfile.TemporaryDirectory() as home, Cache(Path(home)) as cache, \
            StorageServer(cache, "WSSCP", own_port, host="127.0.0.1"), \
            associate(node, WORKSTATION_AET, [Verification]), associate(own, "CALLER", [Verification]):
        time.sleep(0.2)
        started, cpu = time.monotonic(), time.process_time()
        time.sleep(1.0)
        return (time.process_time() - cpu) / (time.monotonic() - started)


def bench_quiet(orthanc: OrthancPeer, runs: int) -> tuple[str, ...]:
    shares: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(runs):
        for tuned in (True, False):
            out = subprocess.run([sys.executable, __file__, "--quiet-share", orthanc.aet, str(orthanc.port),
                                  "tuned" if tuned else "shipped"], check=True, capture_output=True, text=True)
            shares[tuned].append(float(out.stdout.strip().splitlines()[-1]))
    return row("quiet, tuned", shares[True], "pynetdicom as shipped", shares[False], unit="% of a core")


def bench_push(work: Path, runs: int) -> tuple[str, ...]:
    push = [dcmtk("storescu"), "+sd", "-aec", "WORKSTATION", "127.0.0.1", "PORT", str(GE)]

    def timed_push_to(receiver: list[str], name: str, **popen) -> list[float]:
        """Start a receiver on a free port, time pushes of the series to it, stop it."""
        port = free_port()
        proc = subprocess.Popen([str(port) if c == "PORT" else c for c in receiver],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
        command = [str(port) if c == "PORT" else c for c in push]
        try:
            wait_until(lambda: c_echo("WORKSTATION", port), 20, name, proc)
            subprocess.run(command, check=True, env=peer_env(), capture_output=True)  # warm-up
            return timed(lambda: subprocess.run(command, check=True, env=peer_env(), capture_output=True), runs)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)

    ours = timed_push_to([sys.executable, "-m", "workstation", "--home", str(work / "home"), "listen",
                          "--port", "PORT", "--host", "127.0.0.1"], "workstation listen", cwd=ROOT)
    (work / "storescp").mkdir()
    theirs = timed_push_to([dcmtk("storescp"), "-aet", "WORKSTATION", "-od", str(work / "storescp"), "PORT"], "storescp",
                           env=peer_env())
    return row("push to listen", ours, "to storescp", theirs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quiet-share", nargs=3, metavar=("AET", "PORT", "MODE"))
    args = parser.parse_args()
    if args.quiet_share:
        aet, port, mode = args.quiet_share
        print(quiet_share(aet, int(port), mode == "tuned"))
        return
    require_samples()
    from workstation.core.net import transport

    transport.install()  # as the CLI and the window do
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with running(OrthancPeer(work / "orthanc")) as orthanc:
            rows.append(bench_echo(orthanc, args.runs * 4))
            rows.append(bench_quiet(orthanc, args.runs))
        (work / "pki").mkdir()
        rows.append(bench_tls(work / "pki", args.runs * 4))
        rows.append(bench_refused(args.runs * 4))
        rows.append(bench_push(work, args.runs))
    print(f"medians (echo, TLS and refused: {args.runs * 4} runs; quiet and push: {args.runs})")
    print(table(rows, ("ours", "median", "anchor", "median", "ours / anchor")))


if __name__ == "__main__":
    os.environ.setdefault("TCP_NODELAY", "1")
    main()
