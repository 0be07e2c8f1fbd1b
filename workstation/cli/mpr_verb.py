"""`workstation mpr SERIES_UID --plane ... --out OUT.png|OUT.npy`: one MPR plane of a cached series,
headless (../shared/CLI.md). The .npy holds float32 modality values (NaN outside the volume) and a
sidecar OUT.json its geometry, so scripts and external checks can verify it; --save-dicom also
stores the plane as a derived image in the cache."""

from __future__ import annotations

import json
from pathlib import Path

from workstation.cli.output import EXIT_OK, CommandError, print_json


def add_parser(sub) -> None:
    p = sub.add_parser("mpr", help="render one MPR plane of a cached series (PNG, or .npy with a .json sidecar)")
    p.add_argument("series_uid", metavar="SERIES_UID")
    p.add_argument("--plane", required=True, choices=("axial", "coronal", "sagittal"))
    p.add_argument("--oblique", action="append", default=[], metavar="AXIS:DEGREES",
                   help="turn the plane about x, y, z (the patient's axes) or row, column (the plane's own); "
                        "repeat for a double oblique, applied in order")
    p.add_argument("--position", type=float, default=None, metavar="MM",
                   help="the plane's coordinate along its normal, LPS mm (axial z, coronal y, sagittal x); "
                        "default: the volume's centre")
    p.add_argument("--slab", default=None, metavar="MODE:MM", help="a thick slab: mip, minip or avg over MM mm")
    p.add_argument("--window", nargs=2, type=float, default=None, metavar=("C", "W"),
                   help="the PNG's window (default: the series' own window, else its values' full range)")
    p.add_argument("--interpolation", choices=("linear", "cubic", "nearest"), default="linear")
    p.add_argument("--out", required=True, metavar="OUT.png|OUT.npy")
    p.add_argument("--save-dicom", default=None, metavar="DESCRIPTION",
                   help="also store the plane in the cache as a derived image of the series (a new series)")
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    import numpy as np

    from workstation.cli.verbs import open_cache
    from workstation.core.pixels.errors import VolumeError
    from workstation.core.pixels.mpr import (
        PlaneSpec,
        parse_oblique,
        parse_slab,
        position_range,
        volume_centre,
    )
    from workstation.core.pixels.volume import assemble_volume_from_headers
    from workstation.core.pixels.volume_checks import largest_consistent_part

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".npy"):
        raise CommandError(f"{out.name}: --out must end in .png or .npy")
    if not out.parent.exists():
        raise CommandError(f"{out.parent}: no such folder for the output")
    try:
        obliques = [parse_oblique(text) for text in args.oblique]
        slab = parse_slab(args.slab) if args.slab else None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    with open_cache(args) as cache:
        headers = cache.volume_slices(args.series_uid)
        if not headers:
            raise CommandError(f"no series {args.series_uid} in the cache")
        try:
            volume = assemble_volume_from_headers(headers)
        except VolumeError as exc:
            part = largest_consistent_part(headers)
            offer = f"; {part.label} of the series would make one" if part is not None and part.label else ""
            raise CommandError(f"series {args.series_uid} is not a volume: {exc}{offer}") from None
        spec = PlaneSpec.through(args.plane, volume_centre(volume))
        for axis, degrees in obliques:
            spec = spec.rotated(axis, degrees)
        if args.position is not None:
            low, high = position_range(volume, spec)
            if not low - 1e-6 <= args.position <= high + 1e-6:
                raise CommandError(f"--position {args.position:g} mm is outside the volume: the {args.plane} "
                                   f"plane cuts it from {low:.2f} to {high:.2f} mm")
            spec = spec.at(args.position)
        from workstation.vtk3d.image import volume_image
        from workstation.vtk3d.reslice import Reslicer

        values, plane = Reslicer(volume_image(volume)).reslice(spec, slab, args.interpolation)
        window = _window(args, cache, values)
        if out.suffix.lower() == ".npy":
            np.save(out, values.astype(np.float32, copy=False))
            sidecar = out.with_suffix(".json")
            sidecar.write_text(json.dumps(_geometry(plane, spec, slab, volume.warnings), indent=2) + "\n")
        else:
            from workstation.core.pixels.png import write_png
            from workstation.core.pixels.render import FrameRenderer

            write_png(out, FrameRenderer.of_values(values, plane, windows=[window]).render(window))
        saved = None
        if args.save_dicom:
            from workstation.core.reformats import store_derived_series

            try:
                saved = store_derived_series(cache, args.series_uid, [(values, plane)], args.save_dicom,
                                             slab=(slab.mode, slab.thickness) if slab else None,
                                             window=(window.center, window.width))
            except ValueError as exc:
                raise CommandError(f"the plane was written but not stored as DICOM: {exc}") from None
    result = {"out": str(out), "rows": plane.rows, "columns": plane.columns, "position": spec.position,
              "SeriesInstanceUID": saved, "warnings": list(volume.warnings)}
    if args.json:
        print_json(result)
    else:
        print(f"{out}: {plane.columns} x {plane.rows} {args.plane}{' oblique' if spec.oblique else ''} plane at "
              f"{spec.position:.2f} mm" + (f"; stored as series {saved}" if saved else ""))
    return EXIT_OK


def _window(args, cache, values):
    """--window, else the series' own (its first image's), else the plane's full range."""
    import numpy as np

    from workstation.core.pixels.image import ImageSource
    from workstation.core.pixels.voi import Window, full_range_window

    if args.window:
        center, width = args.window
        if width < 1:
            raise CommandError(f"window width must be at least 1 (got {width:g})")
        return Window(center, width)
    instances = [i for i in cache.instances(args.series_uid) if i.Rows]
    if instances:
        try:
            windows = ImageSource.open(instances[0].path).windows()
        except Exception:
            windows = []
        if windows:
            return windows[0]
    finite = values[np.isfinite(values)]
    return full_range_window(float(finite.min()), float(finite.max())) if finite.size else Window(0.0, 1.0)


def _geometry(plane, spec, slab, warnings) -> dict:
    return {
        "spacing": [plane.pixel_spacing[1], plane.pixel_spacing[0]],   # along a row, along a column (mm)
        "origin": [float(v) for v in plane.position],                  # the first pixel's centre, LPS mm
        "row_direction": [float(v) for v in plane.row_direction],
        "column_direction": [float(v) for v in plane.column_direction],
        "normal": [float(v) for v in spec.normal],
        "position": spec.position,
        "rows": plane.rows,
        "columns": plane.columns,
        "slab": {"mode": slab.mode, "thickness": slab.thickness} if slab else None,
        "outside": "NaN",
        "warnings": list(warnings),
    }
