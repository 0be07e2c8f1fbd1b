"""The `workstation` command: headless verbs, or the GUI when no verb is given.

The spellings, exit statuses and JSON keys follow ../shared/CLI.md, which scripts rely on.
Heavy modules (Qt, pydicom, the cache) are imported inside the verbs so `--help` and
`--version` stay instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from workstation import __version__
from workstation.cli import key_verbs, mpr_verb, net_verbs, print_verbs
from workstation.cli.output import EXIT_USAGE, CommandError, error

VERBS = ("import", "list", "render", "mpr", "verify", "evict", "pin", "delete", "keys", *net_verbs.VERBS)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as one `error:` line and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {message} (see 'workstation --help')\n")


def version_text() -> str:
    parts = [f"workstation {__version__}"]
    for name, module in (("pydicom", "pydicom"), ("pynetdicom", "pynetdicom"), ("numpy", "numpy"),
                         ("PySide6", "PySide6"), ("vtk", "vtk")):
        parts.append(f"{name} {_module_version(module)}")
    return "\n".join(parts)


def _module_version(module: str) -> str:
    from importlib import metadata

    dist = {"PySide6": "PySide6-Essentials"}.get(module, module)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        try:
            return metadata.version(module)
        except metadata.PackageNotFoundError:
            return "not installed"


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patient-name", default="", metavar="PAT", help="DICOM wildcards * and ?, case-insensitive")
    p.add_argument("--patient-id", default="", metavar="ID")
    p.add_argument("--study-date", default="", metavar="YYYYMMDD[-YYYYMMDD]")
    p.add_argument("--modality", default="", metavar="MOD")
    p.add_argument("--accession", default="", metavar="A")
    p.add_argument("--description", default="", metavar="TEXT", help="study description, wildcards allowed")
    p.add_argument("--study-uid", default="", metavar="UID")
    p.add_argument("--series-uid", default="", metavar="UID")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="workstation", description="DICOM diagnostic workstation. Without a verb, opens the window.")
    parser.add_argument("--version", action="store_true", help="print the versions and exit")
    parser.add_argument("--home", metavar="DIR", help="folder for settings, cache and logs (or WORKSTATION_HOME)")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = parser.add_subparsers(dest="verb", parser_class=_Parser)

    p = sub.add_parser("import", help="import files, folders, ZIP archives or DICOMDIR media into the cache")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("list", help="list what the local cache holds")
    p.add_argument("--level", choices=("patient", "study", "series", "instance"), default="study")
    _add_filters(p)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("render", help="write one frame as the 8-bit display image (PNG)")
    p.add_argument("source", metavar="FILE|SOP_UID")
    p.add_argument("--out", required=True, metavar="OUT.png")
    p.add_argument("--frame", type=int, default=1, metavar="N",
                   help="frame number, from 1 as in DICOM and dcmj2pnm (default: 1)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--window", nargs=2, type=float, metavar=("CENTER", "WIDTH"))
    g.add_argument("--preset", metavar="NAME", help="a window preset, e.g. 'CT Lung'")
    p.add_argument("--function", choices=("LINEAR", "LINEAR_EXACT", "SIGMOID"), default="LINEAR",
                   help="VOI LUT function for --window/--preset")

    p = sub.add_parser("verify", help="check that the cache index and files agree")
    p.add_argument("--repair", action="store_true", help="re-index orphan files, drop rows without files")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("evict", help="evict least recently used studies down to the quota")
    p.add_argument("--to-size", type=int, default=None, metavar="BYTES")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("pin", help="keep a study from ever being evicted")
    p.add_argument("study_uid", metavar="STUDY_UID")
    p.add_argument("--unpin", action="store_true")

    p = sub.add_parser("delete", help="delete a study from the cache, with its annotations")
    p.add_argument("study_uid", metavar="STUDY_UID")

    key_verbs.add_parser(sub)
    mpr_verb.add_parser(sub)

    net_verbs.add_parsers(sub, _add_filters)
    print_verbs.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    paths_for_gui = _gui_paths(argv)
    if paths_for_gui is not None:
        globals_, paths = paths_for_gui
        args = parser.parse_args(globals_)
        if args.version:
            print(version_text())
            return 0
        quiet_library_warnings(args.debug)
        return _run_gui(args, paths)
    args = parser.parse_args(argv)
    if args.version:
        print(version_text())
        return 0
    quiet_library_warnings(args.debug)
    if args.verb is not None:
        # numpy's OpenBLAS starts a thread per core at import (0.07-0.12 CPU-s here); no verb multiplies matrices.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        from workstation.core.logs import setup_logging
        from workstation.core.paths import home_folder

        setup_logging(home_folder(args.home), args.debug)
    try:
        if args.verb in net_verbs.VERBS:
            return net_verbs.run(args)
        if args.verb in print_verbs.VERBS:
            return print_verbs.run(args)
        from workstation.cli import verbs

        return verbs.run(args)
    except CommandError as exc:
        error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except Exception as exc:
        if args.debug:
            raise
        import logging

        logging.getLogger("workstation").exception("%s failed", args.verb)
        error(_user_message(exc))
        return EXIT_USAGE


def _user_message(exc: Exception) -> str:
    """The cache's own failures are sentences for the user already; anything else is named by its type."""
    reports = sys.modules.get("workstation.core.cache.reports")
    if reports is not None and isinstance(exc, reports.CacheError | reports.CacheFull | reports.CacheBusy):
        return str(exc)
    schema = sys.modules.get("workstation.core.cache.schema")
    if schema is not None and schema.is_damage(exc):
        return str(schema.damaged(str(exc)))
    return f"{type(exc).__name__}: {exc} (the log has the details; or run with --debug)"


def quiet_library_warnings(debug: bool) -> None:
    """pydicom warns on stderr about every odd value it reads; users get our one-line reasons instead."""
    if debug:
        return
    import warnings

    warnings.simplefilter("ignore")


def _gui_paths(argv: list[str]) -> tuple[list[str], list[str]] | None:
    """When no verb is given: the global options and the paths to open in the window."""
    globals_: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--home" and i + 1 < len(argv):
            globals_ += argv[i:i + 2]
            i += 2
            continue
        if a.startswith("-"):
            globals_.append(a)
            i += 1
            continue
        break
    rest = argv[i:]
    if rest and (rest[0] in VERBS or not Path(rest[0]).exists()):
        return None
    if any(a in ("-h", "--help") for a in globals_):
        return None
    return globals_, rest


def _run_gui(args, paths: list[str]) -> int:
    from workstation.app import run_gui

    return run_gui(home=args.home, paths=paths, debug=args.debug)
