"""The headless verbs of issue 2: import, list, render, verify, evict, pin, delete; and keys (key_verbs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from workstation.cli.output import (
    EXIT_OK,
    EXIT_PARTIAL,
    CommandError,
    error,
    print_json,
    print_table,
    warning,
)
from workstation.cli.progress import TerminalProgress
from workstation.core.paths import home_folder


def run(args: argparse.Namespace) -> int:
    if args.verb is None:
        raise CommandError("no verb given")
    handler = {
        "import": import_,
        "list": list_,
        "render": render,
        "verify": verify,
        "evict": evict,
        "pin": pin,
        "delete": delete,
        "keys": keys,
        "mpr": mpr,
    }[args.verb]
    return handler(args)


def open_cache(args):
    from workstation.core.cache import Cache
    from workstation.core.settings import load_settings

    home = home_folder(args.home)
    settings = load_settings(home)
    return Cache(home, quota_bytes=settings.cache_quota_bytes)


def import_(args) -> int:
    missing = [p for p in args.paths if not Path(p).exists()]
    for p in missing:
        warning(f"{p}: no such file or folder")
    with open_cache(args) as cache, TerminalProgress("importing") as bar:
        report = cache.import_paths([Path(p) for p in args.paths if Path(p).exists()], progress=bar)
    doc = report.to_json()
    doc["rejected"] = [{"path": p, "reason": "no such file or folder"} for p in missing] + doc["rejected"]
    if args.json:
        print_json(doc)
    else:
        print(f"imported {doc['imported']}, duplicates {doc['duplicates']}, rejected {len(doc['rejected'])}")
        for r in doc["rejected"]:
            warning(f"{r['path']}: {r['reason']}")
    if report.stopped:
        error(f"the import stopped: {report.stopped}; {report.not_attempted} file(s) were not imported "
              "(what was imported is complete; import again once there is room)")
    return EXIT_PARTIAL if doc["rejected"] or report.stopped else EXIT_OK


LIST_COLUMNS = {
    "patient": ["PatientID", "PatientName", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies"],
    "study": ["PatientName", "PatientID", "StudyDate", "ModalitiesInStudy", "StudyDescription",
              "AccessionNumber", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "StudyInstanceUID"],
    "series": ["SeriesNumber", "Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesInstanceUID"],
    "instance": ["InstanceNumber", "NumberOfFrames", "Rows", "Columns", "SOPInstanceUID"],
}


def filter_from_args(args):
    from workstation.core.cache import QueryFilter

    return QueryFilter(
        PatientName=args.patient_name,
        PatientID=args.patient_id,
        AccessionNumber=args.accession,
        StudyDate=args.study_date,
        Modality=args.modality,
        StudyDescription=args.description,
        StudyInstanceUID=args.study_uid,
        SeriesInstanceUID=args.series_uid,
    )


def list_(args) -> int:
    with open_cache(args) as cache:
        records = cache.query(args.level, filter_from_args(args), limit=args.limit)
    rows = [r.to_json() for r in records]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, LIST_COLUMNS[args.level])
    return EXIT_OK


def render(args) -> int:
    from workstation.core.pixels.errors import PixelDataError
    from workstation.core.pixels.image import ImageSource
    from workstation.core.pixels.png import write_png
    from workstation.core.pixels.render import render as render_frame
    from workstation.core.pixels.voi import Window

    path = Path(args.source)
    if not path.is_file():
        with open_cache(args) as cache:
            found = cache.instance_path(args.source)
        if found is None:
            raise CommandError(f"{args.source}: no such file, and no instance with that SOP Instance UID in the cache")
        path = found
    window = None
    if args.window:
        center, width = args.window
        least = 0.0 if args.function == "LINEAR_EXACT" else 1.0  # PS3.3 C.11.2.1.2: width >= 1, or > 0 exactly
        if width < least or width <= 0:
            raise CommandError(f"window width must be at least {least:g} for {args.function} (got {width:g})")
        window = Window(center, width, args.function)
    elif args.preset:
        from workstation.core.pixels.presets import preset

        try:
            base = preset(args.preset)
        except KeyError as exc:
            raise CommandError(str(exc.args[0]) if exc.args else f"unknown preset {args.preset!r}") from None
        window = Window(base.center, base.width, args.function, base.explanation)
    try:
        source = ImageSource.open(path)
        if not 1 <= args.frame <= source.number_of_frames:
            raise CommandError(f"{path}: there is no frame {args.frame}; the image has {source.number_of_frames} "
                               "frame(s), numbered from 1")
        image = render_frame(source, args.frame - 1, window)
    except PixelDataError as exc:
        raise CommandError(f"{path}: {exc}") from None
    out = Path(args.out)
    if not out.parent.exists():
        raise CommandError(f"{out.parent}: no such folder for the output")
    write_png(out, image)
    return EXIT_OK


def verify(args) -> int:
    """Check the cache; with --repair fix it, and rebuild the index from the files when it is damaged."""
    from workstation.core.cache import IndexDamaged, VerifyReport, rebuild_index
    from workstation.core.settings import load_settings

    try:
        with open_cache(args) as cache:
            report = cache.verify(repair=args.repair)
    except IndexDamaged as exc:
        if not args.repair:
            report = VerifyReport(ok=False, index_damaged=exc.reason)
        else:
            warning(f"the cache index is damaged ({exc.reason}): rebuilding it from the files")
            home = home_folder(args.home)
            with TerminalProgress("rebuilding") as bar:
                report = rebuild_index(home, load_settings(home).cache_quota_bytes, progress=bar)
    doc = report.to_json()
    if args.json:
        print_json(doc)
    elif report.index_damaged and not report.rebuilt:
        print(f"the cache index is damaged ({report.index_damaged}): run 'workstation verify --repair' "
              "to rebuild it from the files (pins and access times are kept)")
    else:
        state = "consistent" if doc["ok"] else "inconsistent"
        print(f"cache is {state}: {doc['orphan_files']} orphan files, {doc['missing_files']} missing files, "
              f"{doc['repaired']} repaired")
        if report.rebuilt:
            print("the damaged index was rebuilt from the files; it is kept as cache/index.damaged.sqlite")
        if not doc["ok"] and not args.repair:
            print("run 'workstation verify --repair' to fix it")
    return EXIT_OK if doc["ok"] or args.repair else EXIT_PARTIAL


def evict(args) -> int:
    with open_cache(args) as cache:
        if args.to_size is None and cache.quota_bytes is None:
            raise CommandError("no quota is set: give --to-size BYTES")
        report = cache.evict(args.to_size)
    doc = report.to_json()
    if args.json:
        print_json(doc)
    else:
        print(f"evicted {len(report.evicted_studies)} studies, freed {report.freed_bytes} bytes, "
              f"cache now {report.size_bytes} bytes")
    return EXIT_OK


def _require_study(cache, uid: str) -> None:
    from workstation.core.cache import QueryFilter

    if not cache.studies(QueryFilter(StudyInstanceUID=uid)):
        raise CommandError(f"no study {uid} in the cache")


def pin(args) -> int:
    with open_cache(args) as cache:
        _require_study(cache, args.study_uid)
        cache.pin(args.study_uid, not args.unpin)
    return EXIT_OK


def delete(args) -> int:
    with open_cache(args) as cache:
        if args.study_uid not in cache.annotated_studies():  # an evicted study can still have annotations
            _require_study(cache, args.study_uid)
        cache.delete(args.study_uid)
    return EXIT_OK


def keys(args) -> int:
    from workstation.cli import key_verbs

    return key_verbs.run(args)


def mpr(args) -> int:
    from workstation.cli import mpr_verb

    return mpr_verb.run(args)
