"""Export of what the viewer shows: a viewport (with its annotations and corners, or the image alone
at its own resolution) or the whole layout, as PNG or JPEG."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QImage

from workstation.ui.viewer.viewport import qimage_from


def export_image(viewer, path: str, whole_layout: bool = False, annotations: bool = True) -> str | None:
    """Write the picture; None on success, else the reason in words."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        return f"Cannot export to {Path(path).name}: choose a .png or .jpg file name."
    if whole_layout:   # MPR's planes and 3D view while MPR shows
        image = (viewer.mpr if viewer.showing_mpr else viewer.grid).grab().toImage()
    elif annotations:
        image = viewer.viewport.grab().toImage()
    else:
        buffer = viewer.active_model.render()
        if buffer is None:
            return "There is no image in the viewport to export."
        image = qimage_from(buffer)
    image = image.convertToFormat(QImage.Format.Format_RGB888 if image.isGrayscale() is False
                                  else QImage.Format.Format_Grayscale8)
    if not image.save(path, "JPEG" if suffix != ".png" else "PNG", 95 if suffix != ".png" else -1):
        return f"Could not write {path}: check the folder exists and can be written."
    return None
