"""`workstation keys STUDY_UID`: list a study's key images, or change them (a new Key Object Selection document).

The key images shown are those of the study's newest document of ours, or, when it has none, of the
newest from another system (a PACS) that is not a rejection note. A change writes a new document of
ours into the cache, made from the one shown, and replaces our previous one in the same unit.
"""

from __future__ import annotations

from workstation.cli.output import EXIT_OK, EXIT_PARTIAL, CommandError, print_json, print_table, warning

ATTEMPTS = 5
"""Times a change is redone when another writer changed the key images in between."""


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


def _current(cache, study_uid: str):
    """(documents, the document shown, its KeyObject or None, the newest of ours' SOP UID or None)."""
    from workstation.core.dicom.key_objects import load_key_object

    documents = cache.key_objects(study_uid)
    for d in documents:
        if d.problem:
            warning(f"key-image document {d.SOPInstanceUID} cannot be read: {d.problem}")
    readable = [d for d in documents if not d.problem and not d.rejection_note]
    ours = [d for d in readable if d.ours]
    shown = (ours or readable or [None])[0]
    document = None
    if shown is not None:
        try:
            document = load_key_object(shown.path)
        except ValueError as exc:  # it changed since it was listed
            raise CommandError(f"key-image document {shown.SOPInstanceUID} cannot be read: {exc}") from None
        for text in document.warnings:
            warning(f"key-image document {shown.SOPInstanceUID}: {text}")
    newest_ours = next((d.SOPInstanceUID for d in documents if d.ours), None)
    return documents, shown, document, newest_ours


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
    from workstation.core.cache import KeyObjectsChanged

    with open_cache(args) as cache:
        _require_study(cache, args.study_uid)
        if not (args.add or args.remove or args.description is not None):
            documents, shown, document, _ = _current(cache, args.study_uid)
            _report(args, args.study_uid, documents, shown, document)
            return EXIT_OK
        adds = [_spec(s) for s in args.add]
        removes = [_spec(s) for s in args.remove]
        instances = _instances(cache, args.study_uid)
        for sop, frame in adds:
            _check_addable(instances, args.study_uid, sop, frame)
        for attempt in range(ATTEMPTS):
            documents, shown, document, newest_ours = _current(cache, args.study_uid)
            changed, missing = _change(document, instances, adds, removes)
            if changed is None and args.description is not None and document is not None \
                    and args.description != document.description:
                changed = document.references()  # the same images, described anew
            if changed is None:
                if document is None and not adds:
                    raise CommandError(f"study {args.study_uid} has no key images to describe: add some first")
                break
            data = _document_bytes(cache, args, instances, document, shown, changed)
            try:
                cache.replace_key_object(args.study_uid, data, newest_ours)
                break
            except KeyObjectsChanged:
                if attempt == ATTEMPTS - 1:
                    raise
        for sop, frame in missing:
            warning(f"{sop}{'' if frame is None else f':{frame}'} is not a key image of study {args.study_uid}")
        documents, shown, document, _ = _current(cache, args.study_uid)
        if changed == [] and shown is not None:
            warning(f"no key images of ours are left; those of {shown.Manufacturer or 'another system'}'s document "
                    f"{shown.SOPInstanceUID} show again (a document of another system is kept as it is)")
        _report(args, args.study_uid, documents, shown, document)
    return EXIT_PARTIAL if missing else EXIT_OK


def _instances(cache, study_uid: str) -> dict:
    from workstation.core.cache import QueryFilter

    return {i.SOPInstanceUID: i for i in cache.query("instance", QueryFilter(StudyInstanceUID=study_uid))}


def _check_addable(instances: dict, study_uid: str, sop: str, frame: int | None) -> None:
    from workstation.core.dicom.key_objects import KEY_OBJECT_SELECTION

    instance = instances.get(sop)
    if instance is None:
        raise CommandError(f"no instance {sop} in study {study_uid} in the cache")
    if instance.SOPClassUID == KEY_OBJECT_SELECTION:
        raise CommandError(f"{sop} is a key-image document itself, not an image")
    if frame is not None and frame > instance.NumberOfFrames:
        raise CommandError(f"{sop} has {instance.NumberOfFrames} frame(s), numbered from 1: there is no frame {frame}")


def _change(document, instances: dict, adds, removes):
    """The new selection, or None when it is the same; and the removals that named no key image."""
    from workstation.core.dicom.key_objects import KeyReference, merge_references, with_key, without_key

    before = document.references() if document else []
    refs = list(before)
    for sop, frame in adds:
        instance = instances[sop]
        frames = None if frame is None or instance.NumberOfFrames <= 1 else (frame,)
        refs = with_key(refs, KeyReference(instance.SOPClassUID, sop, instance.SeriesInstanceUID, frames))
    missing = []
    for sop, frame in removes:
        instance = instances.get(sop)
        frames = instance.NumberOfFrames if instance is not None else 1
        if frame is not None and frames <= 1 and frame == 1:
            frame = None
        refs, removed = without_key(refs, sop, frame, frames)
        if not removed:
            missing.append((sop, frame))
    if merge_references(refs) == merge_references(before):
        return None, missing
    return refs, missing


def _document_bytes(cache, args, instances: dict, document, shown, refs) -> bytes | None:
    import pydicom

    from workstation.core.dicom.key_objects import OF_INTEREST, build_key_object, to_part10

    if not refs:
        if shown is not None and not shown.ours:
            raise CommandError(f"the key images come from {shown.Manufacturer or 'another system'}'s document "
                               f"{shown.SOPInstanceUID}, which is kept as it is, and a document of ours needs at "
                               "least one image: they cannot all be removed")
        return None
    source = next((i for i in instances.values() if i.Rows and i.Columns), None) or next(iter(instances.values()))
    try:
        study = pydicom.dcmread(source.path, stop_before_pixels=True)
    except Exception as exc:
        raise CommandError(f"cannot read the study's attributes from {source.path}: {exc}") from None
    ours = document is not None and shown.ours
    description = args.description if args.description is not None else (document.description if document else "")
    try:
        ds = build_key_object(
            study, refs,
            title=document.title_code if ours and document.title_code else OF_INTEREST,
            description=description,
            series_uid=shown.SeriesInstanceUID if ours else None,
            series_number=document.SeriesNumber if ours else None,
            instance_number=(document.InstanceNumber or 0) + 1 if ours else 1,
            content_creator=args.creator,
        )
    except ValueError as exc:
        raise CommandError(f"cannot make the key-image document: {exc}") from None
    return to_part10(ds)
