"""Which pixel codecs this installation can really decode, probed through pydicom's decoder registry."""

from __future__ import annotations

from functools import cache

from pydicom.pixels import get_decoder
from pydicom.uid import UID

PLUGIN_HINTS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg (or Pillow)",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg (or Pillow)",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg (or pyjpegls)",
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg (or pyjpegls)",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg (HTJ2K)",
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg (HTJ2K)",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg (HTJ2K)",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle (or numpy's built-in RLE decoder)",
}


def transfer_syntax_name(uid: str) -> str:
    """'JPEG Extended (Process 2 and 4) (1.2.840.10008.1.2.4.51)' style label for messages."""
    u = UID(uid)
    name = u.name if u.is_valid and u.name != str(u) else "unknown transfer syntax"
    return f"{name} ({u})"


@cache
def decoder_status(transfer_syntax_uid: str) -> str | None:
    """None when a decoder plugin is importable, else the reason and the plugin to install."""
    uid = UID(str(transfer_syntax_uid))
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"no pixel decoder exists for {transfer_syntax_name(uid)}"
    if decoder.is_available:
        return None
    hint = PLUGIN_HINTS.get(str(uid), "a pydicom pixel decoder plugin")
    missing = "; ".join(decoder.missing_dependencies)
    detail = f" (missing: {missing})" if missing else ""
    return f"{transfer_syntax_name(uid)} needs {hint}, which is not installed{detail}"
