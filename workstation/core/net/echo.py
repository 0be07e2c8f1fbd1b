"""C-ECHO: is the node there, and does it accept us?"""

from __future__ import annotations

import time

from pynetdicom.sop_class import Verification

from workstation.core.model.node import Node
from workstation.core.net.association import NetworkError, associate


def echo(node: Node, own_aet: str) -> float:
    """Round trip in seconds, association included; raises NetworkError with the reason."""
    started = time.monotonic()
    with associate(node, own_aet, [Verification]) as assoc:
        status = assoc.send_c_echo()
    if not status or "Status" not in status:
        raise NetworkError(f"node {node.name} did not answer the C-ECHO (no response within "
                           f"{node.network_timeout:g} s)")
    if status.Status != 0x0000:
        raise NetworkError(f"node {node.name} answered the C-ECHO with status 0x{status.Status:04X}")
    return time.monotonic() - started
