"""Opening associations with a node, and turning what goes wrong into words a user can act on.

Every service (echo, find, retrieve, send) goes through `associate`, so a host name that cannot
be found, a refused connection, a rejection with its reason, a timeout, and (`no_answer_text`) a
request that got no response because the node aborted or closed the association or let it time
out, read the same everywhere. A timeout is said only when we waited it out: a node that ends the
association at once (Orthanc does so for a calling AE title it does not know) is not "silent".
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import weakref
from collections.abc import Iterator

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ABORT, A_ASSOCIATE, A_P_ABORT

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


def _timeout_text(node: Node, waited: float) -> str:
    return (f"{node.host}:{node.port} did not answer within {waited:.0f} s: "
            "check the host name and that no firewall blocks the port")


def _host_not_found(node: Node) -> str:
    return f"the host name {node.host!r} of node {node.name} could not be found: check the node's host"


def _reachability(node: Node) -> str:
    """Why the TCP connection failed, found by trying it once more ourselves (refusals are instant)."""
    started = time.monotonic()
    try:
        with socket.create_connection((node.host, node.port), timeout=node.connect_timeout):
            return ""
    except ConnectionRefusedError:
        return (f"{node.host}:{node.port} refused the connection: nothing listens on that port. "
                f"Check the port of node {node.name} and that the PACS is running")
    except TimeoutError:
        return _timeout_text(node, time.monotonic() - started)
    except socket.gaierror:
        return _host_not_found(node)
    except OSError as exc:
        return f"cannot reach {node.host}:{node.port}: {exc.strerror or exc}"


def _not_established_text(node: Node, own_aet: str, waited: float) -> str:
    """Why an association that was neither accepted nor rejected failed: timed out (which wait), or why
    the connection failed."""
    if waited >= (node.connect_timeout + 5) * 0.9:   # the ACSE timeout: connected, then no answer
        return (f"node {node.name} ({node.host}:{node.port}) accepted the connection but did not answer the "
                f"association request within {waited:.0f} s: check that this is the node's DICOM port"
                + (" and that it expects TLS" if node.uses_tls else ""))
    if waited >= node.connect_timeout * 0.9:
        return _timeout_text(node, waited)
    reason = _reachability(node)
    if not reason and node.uses_tls:
        reason = (f"the TLS connection to node {node.name} ({node.host}:{node.port}) failed: check that it "
                  "expects TLS on this port, that its certificate is signed by the CA file, and whether it "
                  "requires our certificate and key")
    return reason or (f"node {node.name} ({node.host}:{node.port}) ended the association before it was "
                      f"established: check its AE title and whether it knows our AE title {own_aet!r}")


def rejection_text(assoc: Association, node: Node, own_aet: str, primitive=None) -> str:
    """A rejected association in words: the reason pynetdicom reports and what to do about it."""
    primitive = primitive or getattr(assoc.acceptor, "primitive", None)
    reason = getattr(primitive, "reason_str", "") if primitive is not None else ""
    text = f"node {node.name} ({node.aet}@{node.host}:{node.port}) rejected the association"
    if reason:
        text += f": {reason}"
    lowered = reason.lower()
    if "called" in lowered:
        hint = f"; check that the node's AE title is really {node.aet!r}"
    elif "calling" in lowered:
        hint = (f"; it does not know our AE title {own_aet!r}: add it (with our host and Storage SCP port) to "
                "the PACS's DICOM nodes, or ask its administrator to")
    elif getattr(primitive, "result", None) == 0x02:   # rejected-transient
        hint = "; the node is busy for now: try again in a moment"
    else:
        hint = (f"; a PACS that does not know the caller often rejects it so: check that our AE title {own_aet!r} "
                f"is among its DICOM nodes (add it on the PACS) and that the node's AE title is {node.aet!r}")
    return text + hint


_ENDINGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Association -> how it ended, as heard on it: "aborted" (the node sent A-ABORT), "closed" (the
connection dropped), "ours" (we aborted it: pynetdicom does on a DIMSE timeout)."""


def _on_acse(event) -> None:
    primitive = event.primitive
    if isinstance(primitive, A_ABORT | A_P_ABORT):
        if event.event == evt.EVT_ACSE_SENT:
            _ENDINGS.setdefault(event.assoc, "ours")
        else:   # heard from the node: it wins over an abort of ours that raced with it
            _ENDINGS[event.assoc] = "aborted" if isinstance(primitive, A_ABORT) else "closed"


ENDING_HANDLERS = [(evt.EVT_ACSE_RECV, _on_acse), (evt.EVT_ACSE_SENT, _on_acse)]


def how_it_ended(assoc: Association, wait: float = 2.0) -> str:
    """"aborted", "closed", "ours" or "" (ended by a release, or still up after `wait`) for an association
    that got no response: every such one is ending, and its thread records what it heard as it ends."""
    if assoc.is_alive():
        assoc.join(wait)
    return _ENDINGS.get(assoc, "")


def no_answer_text(assoc: Association, node: Node, own_aet: str, request: str, since: float) -> str:
    """Why `request` ("the search", "the C-ECHO", ...) got no response; `since`: monotonic time from
    which a response was awaited."""
    ended = how_it_ended(assoc)
    waited = time.monotonic() - since
    add = (f"add our AE title {own_aet!r} (with our host and Storage SCP port) to the PACS's DICOM nodes, or ask "
           "its administrator to")
    if ended == "aborted":
        return (f"node {node.name} aborted the association instead of answering {request}, as a PACS does with "
                f"a calling AE title it does not know: {add}")
    if ended == "closed":
        return (f"node {node.name} closed the connection without answering {request}: the PACS stopped, or it "
                f"does not know our AE title; then {add}")
    if waited >= node.network_timeout * 0.9:
        return (f"node {node.name} did not answer {request} within {node.network_timeout:g} s: the PACS may be "
                f"overloaded, or silent towards a calling AE title it does not know ({own_aet!r})")
    return (f"node {node.name} sent no usable answer to {request} (after {waited:.1f} s); the log has what "
            "pynetdicom saw")


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
    try:
        assoc = ae.associate(
            node.host, node.port, ae_title=node.aet, ext_neg=ext_neg,
            evt_handlers=with_tuning([*ENDING_HANDLERS, *(evt_handlers or [])]),
            tls_args=(tls, node.host) if tls is not None else None,
        )
    except socket.gaierror:   # pynetdicom resolves the name before it connects
        raise ConnectionFailed(_host_not_found(node)) from None
    if assoc.is_rejected:
        raise AssociationRejected(rejection_text(assoc, node, own_aet))
    if not assoc.is_established and (rejection := _queued_rejection(assoc)) is not None:
        raise AssociationRejected(rejection_text(assoc, node, own_aet, rejection))
    if not assoc.is_established:
        raise ConnectionFailed(_not_established_text(node, own_aet, time.monotonic() - started))
    try:
        yield assoc
    except BaseException:
        if assoc.is_established:
            assoc.abort()
        raise
    else:
        if assoc.is_established:
            assoc.release()
