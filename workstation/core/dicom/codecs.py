"""Which transfer syntaxes this installation can decode, probed through pydicom's decoder registry, and
the one sentence that says why one cannot be and what to install."""

from __future__ import annotations

from functools import cache

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
    u = UID(str(uid))
    name = u.name if u.is_valid and u.name != str(u) else "unknown transfer syntax"
    return f"{name} ({u})"


@cache
def decoder_problem(transfer_syntax_uid: str) -> str | None:
    """None when pixel data in this transfer syntax can be decoded here, else why not and what to install."""
    from pydicom.pixels import get_decoder

    uid = UID(str(transfer_syntax_uid))
    label = transfer_syntax_name(uid)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"{label} cannot be decoded: pydicom has no decoder for it"
    except Exception as exc:
        return f"{label} cannot be decoded: {exc}"
    if decoder.is_available:
        return None
    hint = PLUGIN_HINTS.get(str(uid), "a pydicom pixel decoder plugin")
    missing = "; ".join(decoder.missing_dependencies)
    detail = f" (missing: {missing})" if missing else ""
    return f"{label} cannot be decoded: it needs {hint}, which is not installed{detail}"
