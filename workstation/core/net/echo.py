"""C-ECHO: is the node there, and does it accept us?"""

from __future__ import annotations

import time

from pynetdicom.sop_class import Verification

from workstation.core.model.node import Node
from workstation.core.net.association import NetworkError, associate, no_answer_text


def echo(node: Node, own_aet: str) -> float:
    """Round trip in seconds, association included; raises NetworkError with the reason."""
    started = time.monotonic()
    with associate(node, own_aet, [Verification]) as assoc:
        asked = time.monotonic()
        status = assoc.send_c_echo()
        if not status or "Status" not in status:
            raise NetworkError(no_answer_text(assoc, node, own_aet, "the C-ECHO", asked))
    if status.Status != 0x0000:
        raise NetworkError(f"node {node.name} answered the C-ECHO with status 0x{status.Status:04X}")
    return time.monotonic() - started
