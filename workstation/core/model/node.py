"""A remote DICOM node (a PACS or modality) as the user configures it: the record settings keep and every network service takes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

METHODS = ("get", "move")
DEFAULT_MAX_ASSOCIATIONS = 4
"""Orthanc serves 4 associations at a time unless told otherwise (DicomThreadsCount); a fifth waits."""
MAX_ASSOCIATIONS = 32
MODELS = ("study", "patient")


class NodeError(ValueError):
    """A node setting that cannot work, in words the user can act on."""


def check_ae_title(value: str, what: str = "AE title") -> str:
    """PS3.5: up to 16 characters of the default repertoire, no backslash or control characters."""
    title = value.strip()
    if not title:
        raise NodeError(f"the {what} is empty")
    if len(title) > 16:
        raise NodeError(f"the {what} {title!r} is longer than 16 characters")
    if any(ord(c) < 0x20 or ord(c) > 0x7E or c == "\\" for c in title):
        raise NodeError(f"the {what} {title!r} has characters an AE title cannot hold")
    return title


def check_port(value: int | str, what: str = "port") -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise NodeError(f"the {what} {value!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise NodeError(f"the {what} {port} is not between 1 and 65535")
    return port


def check_max_associations(value: int | str, name: str = "") -> int:
    what = f"node {name}: " if name else ""
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise NodeError(f"{what}the most associations {value!r} is not a number") from None
    if not 1 <= count <= MAX_ASSOCIATIONS:
        raise NodeError(f"{what}the most associations must be between 1 and {MAX_ASSOCIATIONS}, not {count}")
    return count


@dataclass(frozen=True)
class Node:
    name: str
    aet: str
    host: str
    port: int
    method: str = "get"           # preferred retrieval: C-GET or C-MOVE to our Storage SCP
    model: str = "study"          # Study Root or Patient Root query/retrieve
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    connect_timeout: float = 5.0
    network_timeout: float = 30.0
    max_associations: int = DEFAULT_MAX_ASSOCIATIONS
    """Most associations we hold with the node at once (a retrieval's parallel ones included)."""

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise NodeError("a node needs a name")
        object.__setattr__(self, "aet", check_ae_title(self.aet))
        object.__setattr__(self, "port", check_port(self.port))
        if not self.host.strip():
            raise NodeError(f"node {self.name}: the host is empty")
        if self.method not in METHODS:
            raise NodeError(f"node {self.name}: retrieval method must be one of {', '.join(METHODS)}")
        if self.model not in MODELS:
            raise NodeError(f"node {self.name}: query model must be one of {', '.join(MODELS)}")
        object.__setattr__(self, "max_associations", check_max_associations(self.max_associations, self.name))
        tls = (self.tls_ca, self.tls_cert, self.tls_key)
        if any(tls) and not (self.tls_ca and bool(self.tls_cert) == bool(self.tls_key)):
            raise NodeError(f"node {self.name}: TLS needs a CA file, and a certificate with its key (or neither)")

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls_ca)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> Node:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})
