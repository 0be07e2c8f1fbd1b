"""Opening associations with a node, and turning what goes wrong into words a user can act on.

Every service (echo, find, retrieve, send) goes through `associate`, so a refused connection,
an unreachable host, a rejection with its reason, or a timeout reads the same everywhere.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ASSOCIATE

from workstation.core.model.node import Node
from workstation.core.net.transport import with_tuning


class NetworkError(Exception):
    """A network job that could not be done; str() says what failed and what to try."""


class ConnectionFailed(NetworkError):
    pass


class AssociationRejected(NetworkError):
    pass


class AssociationAborted(NetworkError):
    pass


def make_ae(own_aet: str, node: Node) -> AE:
    ae = AE(ae_title=own_aet)
    ae.connection_timeout = node.connect_timeout
    ae.acse_timeout = node.connect_timeout + 5
    ae.network_timeout = node.network_timeout
    ae.dimse_timeout = node.network_timeout
    return ae


def tls_context(node: Node) -> ssl.SSLContext | None:
    if not node.uses_tls:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=node.tls_ca)
        if node.tls_cert:
            context.load_cert_chain(node.tls_cert, node.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise NetworkError(f"node {node.name}: cannot load the TLS files: {exc}") from None
    return context


def _timeout_text(node: Node) -> str:
    return (f"{node.host}:{node.port} did not answer within {node.connect_timeout:g} s: "
            "check the host name and that no firewall blocks the port")


def _reachability(node: Node) -> str:
    """Why the TCP connection failed, found by trying it once more ourselves (refusals are instant)."""
    try:
        with socket.create_connection((node.host, node.port), timeout=node.connect_timeout):
            return ""
    except ConnectionRefusedError:
        return (f"{node.host}:{node.port} refused the connection: nothing listens on that port. "
                f"Check the port of node {node.name} and that the PACS is running")
    except TimeoutError:
        return _timeout_text(node)
    except socket.gaierror:
        return f"the host name {node.host!r} of node {node.name} cannot be resolved"
    except OSError as exc:
        return f"cannot reach {node.host}:{node.port}: {exc.strerror or exc}"


def rejection_text(assoc: Association, node: Node, own_aet: str, primitive=None) -> str:
    primitive = primitive or getattr(assoc.acceptor, "primitive", None)
    reason = getattr(primitive, "reason_str", "") if primitive is not None else ""
    text = f"node {node.name} ({node.aet}@{node.host}:{node.port}) rejected the association"
    if reason:
        text += f": {reason}"
    hint = ""
    lowered = reason.lower()
    if "called" in lowered:
        hint = f"; check that the node's AE title is really {node.aet!r}"
    elif "calling" in lowered:
        hint = f"; ask the PACS administrator to add our AE title {own_aet!r}"
    return text + hint


def _queued_rejection(assoc: Association) -> A_ASSOCIATE | None:
    """A rejection that arrived but was never read: pynetdicom gives up on an association whose socket
    is already closed when it looks, and a node that rejects us closes it right after the A-ASSOCIATE-RJ."""
    for primitive in list(assoc.dul.to_user_queue.queue):
        if isinstance(primitive, A_ASSOCIATE) and primitive.result not in (None, 0x00):
            return primitive
    return None


@contextlib.contextmanager
def associate(
    node: Node, own_aet: str, contexts: list, ext_neg: list | None = None, evt_handlers: list | None = None
) -> Iterator[Association]:
    """An established association to `node`, released (or aborted on error) when the block ends.

    `contexts` are (abstract syntax, [transfer syntaxes]) pairs or abstract syntaxes alone.
    """
    ae = make_ae(own_aet, node)
    for context in contexts:
        if isinstance(context, tuple):
            ae.add_requested_context(*context)
        else:
            ae.add_requested_context(context)
    tls = tls_context(node)
    started = time.monotonic()
    assoc = ae.associate(
        node.host, node.port, ae_title=node.aet, ext_neg=ext_neg, evt_handlers=with_tuning(evt_handlers),
        tls_args=(tls, node.host) if tls is not None else None,
    )
    if assoc.is_rejected:
        raise AssociationRejected(rejection_text(assoc, node, own_aet))
    if not assoc.is_established and (rejection := _queued_rejection(assoc)) is not None:
        raise AssociationRejected(rejection_text(assoc, node, own_aet, rejection))
    if not assoc.is_established:
        if time.monotonic() - started >= node.connect_timeout * 0.9:
            reason = _timeout_text(node)
        else:
            reason = _reachability(node)
        if not reason and node.uses_tls:
            reason = (f"the TLS connection to node {node.name} ({node.host}:{node.port}) failed: check that it "
                      "expects TLS on this port, that its certificate is signed by the CA file, and whether it "
                      "requires our certificate and key")
        raise ConnectionFailed(reason or f"node {node.name} ({node.host}:{node.port}) ended the association "
                                         "before it was established: check its AE title and whether it knows "
                                         f"our AE title {own_aet!r}")
    try:
        yield assoc
    except BaseException:
        if assoc.is_established:
            assoc.abort()
        raise
    else:
        if assoc.is_established:
            assoc.release()
