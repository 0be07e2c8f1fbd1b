"""Real DICOM peers for the tests: an Orthanc PACS and DCMTK's dcmprscp print SCP.

Each peer runs as a child process on a free loopback port with its own temporary storage, is
checked for readiness (HTTP and C-ECHO) before a test gets it, and is stopped afterwards with
no process left behind. Both run with TCP_NODELAY=1: without it every DIMSE reply waits ~45 ms
for Nagle's algorithm (see ../shared/PEERS.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def dcmtk(name: str) -> str:
    """DCMTK's tool of that name: the first on PATH outside this virtual environment, whose bin/ holds
    pynetdicom's own echoscu, findscu, getscu, movescu and storescu (other options, other output)."""
    own = (Path(sys.prefix) / "bin").resolve()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder and Path(folder).resolve() != own:
            candidate = Path(folder) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return f"/usr/bin/{name}"


ORTHANC_BIN = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DCMPRSCP_BIN = shutil.which("dcmprscp") or "/usr/bin/dcmprscp"
DCMJ2PNM_BIN = shutil.which("dcmj2pnm") or "/usr/bin/dcmj2pnm"
DCMPSTAT_CFG = Path("/etc/dcmtk/dcmpstat.cfg")

WORKSTATION_AET = "WORKSTATION"
"""The AE title the tests' workstation uses; Orthanc knows it (C-FIND needs that) at `workstation_port`."""

# Sample folders loaded into the PACS: a multi-patient prior/current set, the phantom CT
# (a 140-slice series, a localizer and a second study) and the tilted GE head.
ORTHANC_PRELOAD = ["tcia_covid19_ny_sbu", "dcm_qa_ct"]


def free_port() -> int:
    """A TCP port that is free on loopback now (the peer binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peer_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


def require_binary(path: str, package: str) -> None:
    if not Path(path).exists():
        reason = f"{path} is missing: install the Debian package '{package}' (make test does)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _die_with_the_tests() -> None:
    """In the peer's child process: get SIGKILL if the test process dies, even by a crash."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def c_echo(aet: str, port: int, calling_aet: str = "WSTEST", timeout: float = 5.0) -> bool:
    """True when the peer accepts an association and answers C-ECHO with Success."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=calling_aet)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = timeout
    assoc = ae.associate("127.0.0.1", port, ae_title=aet)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and status.Status == 0x0000
    finally:
        assoc.release()


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with status {proc.returncode}")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it lingers; always reaps the child."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass
class Modality:
    name: str
    aet: str
    host: str
    port: int


@dataclass
class OrthancPeer:
    """A running Orthanc PACS: DICOM on `port` with AE title `aet`, REST on `http_port`."""

    workdir: Path
    aet: str = "ORTHANC"
    port: int = 0
    http_port: int = 0
    modalities: list[Modality] = field(default_factory=list)
    workstation_port: int = 0
    always_allow: bool = True
    """False: a calling AE title not in DicomModalities is rejected at association time ("calling AE title
    not recognised"); True (the default): it may associate and C-ECHO, and other requests are aborted."""
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def config(self) -> dict:
        return {
            "Name": "workstation-tests",
            "DicomAet": self.aet,
            "DicomPort": self.port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": self.always_allow,
            "DicomAlwaysAllowStore": self.always_allow,
            "SynchronousCMove": True,
            "DicomAssociationCloseDelay": 0,
            "OverwriteInstances": True,
            "StableAge": 1,
            # Rows, Columns etc. are not in Orthanc's index: "Never" would answer them empty on C-FIND.
            "StorageAccessOnFind": "Always",
            "Plugins": [],
            "DicomModalities": {m.name: [m.aet, m.host, m.port] for m in self.modalities},
        }

    def start(self) -> None:
        self.port = self.port or free_port()
        self.http_port = self.http_port or free_port()
        self.workstation_port = self.workstation_port or free_port()
        if not any(m.aet == WORKSTATION_AET for m in self.modalities):
            self.modalities.append(Modality("workstation", WORKSTATION_AET, "127.0.0.1", self.workstation_port))
        (self.workdir / "storage").mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=2))
        log = open(self.workdir / "orthanc.log", "wb")  # noqa: SIM115 - kept open for the child's life
        self.proc = subprocess.Popen(
            [ORTHANC_BIN, str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=peer_env(),
            start_new_session=True, preexec_fn=_die_with_the_tests,
        )
        log.close()
        wait_until(lambda: self.rest("GET", "/system") is not None, 30, "Orthanc HTTP", self.proc)
        calling = "WSTEST" if self.always_allow else WORKSTATION_AET
        wait_until(lambda: c_echo(self.aet, self.port, calling), 30, "Orthanc C-ECHO", self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def kill(self) -> None:
        """Kill -9, as a crashed PACS would disappear mid-transfer."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def rest(self, method: str, path: str, body: bytes | dict | None = None):
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/dicom" if isinstance(body, bytes) else "application/json")
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else {}

    def upload(self, paths) -> int:
        """POST each DICOM file to /instances; returns how many Orthanc accepted."""
        n = 0
        for p in paths:
            try:
                self.rest("POST", "/instances", Path(p).read_bytes())
                n += 1
            except urllib.error.HTTPError:
                pass
        return n

    def add_modality(self, name: str, aet: str, host: str, port: int) -> None:
        """Declare a C-MOVE destination / allowed caller at run time."""
        self.rest("PUT", f"/modalities/{name}", {"AET": aet, "Host": host, "Port": port})
        self.modalities.append(Modality(name, aet, host, port))

    def study_uids(self) -> list[str]:
        return [self.rest("GET", f"/studies/{s}")["MainDicomTags"]["StudyInstanceUID"] for s in self.rest("GET", "/studies")]

    def instance_count(self) -> int:
        return len(self.rest("GET", "/instances"))


@dataclass
class PrintSCP:
    """A running dcmprscp; what it stored lands in `database` as HG_*.dcm and SP_*.dcm files."""

    workdir: Path
    aet: str = "PRINTSCP"
    port: int = 0
    printer: str = "TESTPRINTER"
    proc: subprocess.Popen | None = None

    @property
    def database(self) -> Path:
        return self.workdir / "database"

    def config_text(self) -> str:
        base = DCMPSTAT_CFG.read_text(errors="replace")
        # Keep the general sections, point the folders into the work dir, add our printer.
        base = base.replace("Directory = spool", f"Directory = {self.workdir / 'spool'}")
        base = base.replace("Directory = database", f"Directory = {self.database}")
        base = base.replace("LogDirectory = log", f"LogDirectory = {self.workdir / 'log'}")
        base = base.replace("Directory = lut", f"Directory = {self.workdir / 'lut'}")
        printer = f"""
[{self.printer}]
Aetitle = {self.aet}
Description = test film printer
Hostname = localhost
Port = {self.port}
Type = LOCALPRINTER
BorderDensity = 150\\20\\BLACK\\WHITE
DisableNewVRs = false
DisplayFormat = 1,1\\1,2\\2,1\\2,2\\2,3\\3,3\\3,4\\3,5\\4,4\\4,5\\4,6\\5,6
EmptyImageDensity = 20\\BLACK\\WHITE
FilmDestination = MAGAZINE\\PROCESSOR\\BIN_1\\BIN_2
FilmSizeID = 8INX10IN\\10INX12IN\\10INX14IN\\11INX14IN\\14INX14IN\\14INX17IN\\24CMX24CM\\24CMX30CM
ImplicitOnly = false
MagnificationType = REPLICATE\\BILINEAR\\CUBIC\\NONE
MaxDensity = 320
MaxPDU = 32768
MediumType = PAPER\\CLEAR FILM\\BLUE FILM
MinDensity = 20
OmitSOPClassUIDFromCreateResponse = false
PresentationLUTMatchRequired = false
PresentationLUTinFilmSession = false
ResolutionID = STANDARD\\HIGH
SmoothingType = NONE
Supports12Bit = true
SupportsDecimateCrop = false
SupportsImageSize = false
SupportsPresentationLUT = true
SupportsTrim = true
"""
        marker = "[[COMMUNICATION]]"
        return base.replace(marker, marker + "\n" + printer, 1)

    def start(self) -> None:
        self.port = self.port or free_port()
        for sub in ("spool", "database", "log", "lut"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "dcmpstat.cfg"
        cfg.write_text(self.config_text())
        log = open(self.workdir / "dcmprscp.log", "wb")  # noqa: SIM115 - kept open for the child's life
        self.proc = subprocess.Popen(
            [DCMPRSCP_BIN, "-v", "-c", str(cfg), "-p", self.printer], stdout=log, stderr=subprocess.STDOUT,
            env=peer_env(), cwd=self.workdir, start_new_session=True, preexec_fn=_die_with_the_tests,
        )
        log.close()
        wait_until(lambda: c_echo(self.aet, self.port), 20, "dcmprscp C-ECHO", self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def stored_prints(self) -> list[Path]:
        return sorted(self.database.glob("SP_*.dcm"))

    def stored_images(self) -> list[Path]:
        return sorted(self.database.glob("HG_*.dcm"))


@contextlib.contextmanager
def silent_peer():
    """A port that accepts TCP connections and never says a word (a node that hangs); yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def loadable_samples(samples: Path, folders: list[str]) -> list[Path]:
    out: list[Path] = []
    for folder in folders:
        out.extend(p for p in sorted((samples / folder).rglob("*")) if p.is_file() and not p.name.startswith(("LICENSE", "README")))
    return out


@contextlib.contextmanager
def running(peer):
    """Start a peer for the length of a block and always stop it, whatever the block does."""
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory, samples) -> OrthancPeer:
    """A real Orthanc PACS, shared by the session, loaded with sample studies."""
    require_binary(ORTHANC_BIN, "orthanc")
    with running(OrthancPeer(tmp_path_factory.mktemp("orthanc"))) as peer:
        peer.upload(loadable_samples(samples, ORTHANC_PRELOAD))
        yield peer


@pytest.fixture
def fresh_orthanc(tmp_path) -> OrthancPeer:
    """An empty Orthanc of the test's own, for tests that kill or fill it."""
    require_binary(ORTHANC_BIN, "orthanc")
    with running(OrthancPeer(tmp_path / "orthanc")) as peer:
        yield peer


@pytest.fixture(scope="session")
def strict_orthanc(tmp_path_factory) -> OrthancPeer:
    """An empty Orthanc that knows only the tests' AE title and rejects any other caller at association time."""
    require_binary(ORTHANC_BIN, "orthanc")
    with running(OrthancPeer(tmp_path_factory.mktemp("strict-orthanc"), always_allow=False)) as peer:
        yield peer


@pytest.fixture
def print_scp(tmp_path) -> PrintSCP:
    """A real DCMTK film printer (dcmprscp) with its own database folder."""
    require_binary(DCMPRSCP_BIN, "dcmtk")
    with running(PrintSCP(tmp_path / "printscp")) as peer:
        yield peer
