"""`workstation keys STUDY_UID`: list a study's key images, or change them (a new Key Object Selection
document); the workflow is core/key_images.py's, which the window uses too."""

from __future__ import annotations

from workstation.cli.output import EXIT_OK, EXIT_PARTIAL, CommandError, print_json, print_table, warning


def add_parser(sub) -> None:
    p = sub.add_parser("keys", help="list a study's key images, or change them (--add / --remove)")
    p.add_argument("study_uid", metavar="STUDY_UID")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--add", nargs="+", default=[], metavar="SOP_UID[:FRAME]",
                   help="mark instances (or one frame of a multi-frame instance, from 1) as key images")
    g.add_argument("--remove", nargs="+", default=[], metavar="SOP_UID[:FRAME]",
                   help="unmark instances (all their frames) or single frames")
    p.add_argument("--description", default=None, metavar="TEXT",
                   help="the key object description of the new document (default: the current one's)")
    p.add_argument("--creator", default="", metavar="NAME", help="who chose the images (DICOM name, e.g. Doe^Jane)")
    p.add_argument("--json", action="store_true")


def _spec(text: str) -> tuple[str, int | None]:
    sop, sep, frame = text.partition(":")
    sop = sop.strip()
    if not sop:
        raise CommandError(f"{text!r}: give SOP_UID or SOP_UID:FRAME")
    if not sep:
        return sop, None
    try:
        number = int(frame)
    except ValueError:
        raise CommandError(f"{text!r}: the frame after ':' must be a number (from 1)") from None
    if number < 1:
        raise CommandError(f"{text!r}: frames are numbered from 1")
    return sop, number


def _report(args, study_uid: str, documents, shown, document) -> None:
    keys = [i.to_json() for i in document.images] if document else []
    if args.json:
        print_json({
            "StudyInstanceUID": study_uid,
            "document": shown.to_json() if shown else None,
            "title": document.title if document else "",
            "description": document.description if document else "",
            "keys": keys,
            "documents": [d.to_json() for d in documents],
        })
        return
    if document is None:
        print(f"study {study_uid} has no key images")
        return
    origin = "ours" if shown.ours else f"made by {shown.Manufacturer or 'an unnamed system'}"
    print(f"{len(keys)} key image(s) of study {study_uid}, from document {shown.SOPInstanceUID} "
          f"({document.title or 'untitled'}, {origin}, {shown.ContentDate} {shown.ContentTime})")
    if document.description:
        print(f"description: {document.description}")
    print_table(keys, ["SOPInstanceUID", "frame", "SeriesInstanceUID"])


def run(args) -> int:
    from workstation.cli.verbs import _require_study, open_cache
    from workstation.core.key_images import change_key_images, read_key_images

    with open_cache(args) as cache:
        _require_study(cache, args.study_uid)
        if not (args.add or args.remove or args.description is not None):
            found = _warned(read_key_images, cache, args.study_uid)
            _report(args, args.study_uid, found.documents, found.shown, found.document)
            return EXIT_OK
        adds = [_spec(s) for s in args.add]
        removes = [_spec(s) for s in args.remove]
        found, missing = _warned(change_key_images, cache, args.study_uid, adds, removes, args.description,
                                 args.creator)
        for sop, frame in missing:
            warning(f"{sop}{'' if frame is None else f':{frame}'} is not a key image of study {args.study_uid}")
        _report(args, args.study_uid, found.documents, found.shown, found.document)
    return EXIT_PARTIAL if missing else EXIT_OK


def _warned(fn, *args):
    """Run a key-image function; its refusal as a CommandError, its warnings on stderr."""
    try:
        found = fn(*args)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    for text in (found[0] if isinstance(found, tuple) else found).warnings:
        warning(text)
    return found
