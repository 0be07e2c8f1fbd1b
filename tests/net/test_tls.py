"""A node reached over TLS: the CA is checked, a client certificate is presented, words on failure."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.peers import WORKSTATION_AET, free_port
from workstation.core.model.node import Node
from workstation.core.net.association import ConnectionFailed, NetworkError
from workstation.core.net.echo import echo


def openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates")
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name in ("server", "client"):
        san = "subjectAltName=IP:127.0.0.1,DNS:localhost"
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", "-addext", san, cwd=d)
        (d / f"{name}.ext").write_text(san + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=d)
    return d


@pytest.fixture
def tls_scp(pki):
    """A Verification SCP that speaks only TLS and requires a client certificate from our CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    context.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
    context.verify_mode = ssl.CERT_REQUIRED
    ae = AE(ae_title="TLSSCP")
    ae.add_supported_context(Verification)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, ssl_context=context)
    yield port
    server.shutdown()


def test_echo_over_tls_with_a_client_certificate(pki, tls_scp):
    node = Node("secure", "TLSSCP", "127.0.0.1", tls_scp, tls_ca=str(pki / "ca.pem"),
                tls_cert=str(pki / "client.pem"), tls_key=str(pki / "client.key"), connect_timeout=3)
    rtt = echo(node, WORKSTATION_AET)  # its speed beside plain TCP: benchmarks/bench_network_waits.py
    assert isinstance(rtt, float) and rtt > 0


def test_tls_without_our_certificate_is_refused_in_words(pki, tls_scp):
    node = Node("secure", "TLSSCP", "127.0.0.1", tls_scp, tls_ca=str(pki / "ca.pem"), connect_timeout=3)
    with pytest.raises(ConnectionFailed, match="TLS connection to node secure .* failed"):
        echo(node, WORKSTATION_AET)


def test_missing_tls_files_are_named(tmp_path):
    node = Node("secure", "TLSSCP", "127.0.0.1", 104, tls_ca=str(tmp_path / "nope.pem"))
    with pytest.raises(NetworkError, match="cannot load the TLS files"):
        echo(node, WORKSTATION_AET)
