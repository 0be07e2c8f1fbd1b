"""The print verbs (../shared/CLI.md): `workstation printer add|list|rm|status` keeps printer profiles
in the settings; `workstation print PRINTER (FILE... | --study UID | --series UID)` lays the images
out on films and sends them through the Print SCU."""

from __future__ import annotations

import sys

from workstation.cli.output import EXIT_OK, EXIT_PARTIAL, CommandError, error, print_json, print_table
from workstation.core.paths import home_folder

VERBS = ("printer", "print")
FILE_PRINTER = "file"   # `print file ... --to-pdf|--to-png`: no printer needed


def add_parsers(sub) -> None:
    p = sub.add_parser("printer", help="the film printers (DICOM Print SCPs) this workstation prints to")
    printer = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    a = printer.add_parser("add", help="add a printer, or replace the one with that name")
    a.add_argument("name")
    a.add_argument("--aet", required=True, help="the printer's AE title")
    a.add_argument("--host", required=True)
    a.add_argument("--port", required=True, type=int)
    a.add_argument("--color", action="store_true", help="a colour printer (Basic Color Print Management)")
    a.add_argument("--film-sizes", default=None, metavar="A,B,...", help="the film sizes it takes, e.g. 14INX17IN,8INX10IN")
    a.add_argument("--formats", default=None, metavar="F;G;...", help="the display formats it takes, e.g. 'STANDARD\\2,2;STANDARD\\4,5'")
    a.add_argument("--dpi", type=float, default=300.0, help="its resolution: the images are sent at it (default 300)")
    a.add_argument("--film-size", default=None, help="a job's film size unless told (default 14INX17IN)")
    a.add_argument("--format", default=None, help="a job's display format unless told (default STANDARD\\2,2)")
    a.add_argument("--orientation", choices=("PORTRAIT", "LANDSCAPE"), default="PORTRAIT")
    a.add_argument("--medium", default="BLUE FILM", help="PAPER, CLEAR FILM, BLUE FILM, ...")
    a.add_argument("--destination", default="PROCESSOR", help="MAGAZINE, PROCESSOR or BIN_i")
    a.add_argument("--magnification", default="CUBIC", help="REPLICATE, BILINEAR, CUBIC or NONE")
    a.add_argument("--bits", type=int, choices=(8, 12), default=8, help="grey images as 8 or 12 bits (default 8)")
    a.add_argument("--no-presentation-lut", action="store_true",
                   help="never send a Presentation LUT (some printers mishandle one)")
    a.add_argument("--border-density", default="", help="BLACK, WHITE or hundredths of OD (default: the printer's)")
    a.add_argument("--empty-density", default="", help="BLACK, WHITE or hundredths of OD (default: the printer's)")
    a.add_argument("--resolution", default="", help="RequestedResolutionID: STANDARD or HIGH")
    a.add_argument("--min-density", type=int, default=None)
    a.add_argument("--max-density", type=int, default=None)
    a.add_argument("--timeout", type=float, default=30.0, metavar="S")
    ls = printer.add_parser("list", help="list the printers")
    ls.add_argument("--json", action="store_true")
    rm = printer.add_parser("rm", help="remove a printer")
    rm.add_argument("name")
    st = printer.add_parser("status", help="ask a printer how it is (N-GET of the Printer)")
    st.add_argument("name")
    st.add_argument("--json", action="store_true")

    p = sub.add_parser("print", help="print images to film (DICOM Print)")
    p.add_argument("printer", metavar="PRINTER")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--study", default=None, metavar="UID", help="every image of a cached study, series by series")
    p.add_argument("--series", default=None, metavar="UID", help="every image of a cached series")
    p.add_argument("--format", default=None, help="display format, e.g. 'STANDARD\\4,5' (default: the printer's; "
                                                  "'auto': the smallest that holds the images)")
    p.add_argument("--film-size", default=None, help="e.g. 14INX17IN (default: the printer's)")
    p.add_argument("--orientation", choices=("PORTRAIT", "LANDSCAPE"), default=None)
    p.add_argument("--copies", type=int, default=None)
    p.add_argument("--window", nargs=2, type=float, default=None, metavar=("C", "W"),
                   help="window centre and width for every image (default: each image's own)")
    p.add_argument("--label", default="", help="the film session label")
    p.add_argument("--annotate", action="store_true",
                   help="burn in the patient, study date, series and image numbers and a ruler in mm")
    p.add_argument("--true-size", action="store_true",
                   help="1 cm on film = 1 cm in the patient (refused when the spacing or the box does not allow it)")
    to_file = p.add_mutually_exclusive_group()
    to_file.add_argument("--to-pdf", default=None, metavar="OUT.pdf",
                         help="write the films to a PDF (a page per film, the film's size) instead of printing; "
                              "PRINTER may then be 'file' (no printer needed)")
    to_file.add_argument("--to-png", default=None, metavar="OUT_STEM",
                         help="write each film as OUT_STEM-1.png, OUT_STEM-2.png, ... at the printer's dpi "
                              "instead of printing; PRINTER may then be 'file'")
    p.add_argument("--json", action="store_true")


def _settings(args):
    from workstation.core.settings import load_settings

    return load_settings(home_folder(args.home))


def run(args) -> int:
    from workstation.core.model.printer import PrintSetupError
    from workstation.core.net import transport
    from workstation.core.net.association import NetworkError

    transport.install()
    try:
        if args.verb == "printer":
            return {"add": printer_add, "list": printer_list, "rm": printer_rm, "status": printer_status}[args.action](args)
        return print_images(args)
    except (PrintSetupError, NetworkError) as exc:
        raise CommandError(str(exc)) from None


def printer_add(args) -> int:
    from workstation.core.model.printer import Printer
    from workstation.core.settings import save_settings

    settings = _settings(args)
    values = {}
    if args.film_sizes:
        values["film_sizes"] = tuple(s.strip() for s in args.film_sizes.split(",") if s.strip())
    if args.formats:
        values["formats"] = tuple(f.strip() for f in args.formats.split(";") if f.strip())
    if args.film_size:
        values["film_size"] = args.film_size
    elif "film_sizes" in values:
        values["film_size"] = values["film_sizes"][0]
    if args.format:
        values["display_format"] = args.format
    settings.with_printer(Printer(
        name=args.name, aet=args.aet, host=args.host, port=args.port, color=args.color, dpi=args.dpi,
        orientation=args.orientation, medium=args.medium, destination=args.destination,
        magnification=args.magnification, min_density=args.min_density, max_density=args.max_density,
        bits=args.bits, presentation_lut=not args.no_presentation_lut, border_density=args.border_density,
        empty_density=args.empty_density, resolution_id=args.resolution,
        network_timeout=args.timeout, **values,
    ))
    save_settings(home_folder(args.home), settings)
    return EXIT_OK


def printer_list(args) -> int:
    printers = [p.to_json() for p in _settings(args).printers]
    if args.json:
        print_json(printers)
    else:
        print_table(printers, ["name", "aet", "host", "port", "color", "film_size", "display_format", "dpi"])
    return EXIT_OK


def printer_rm(args) -> int:
    from workstation.core.settings import save_settings

    settings = _settings(args)
    settings.without_printer(args.name)
    save_settings(home_folder(args.home), settings)
    return EXIT_OK


def printer_status(args) -> int:
    from workstation.core.net.print_scu import printer_status as n_get

    settings = _settings(args)
    status = n_get(settings.printer(args.name), settings.ae_title)
    if args.json:
        print_json({"name": args.name, "status": status.status, "info": status.info, "printer_name": status.name,
                    "manufacturer": status.manufacturer, "model": status.model})
    else:
        print(f"{args.name}: {status.words()}")
    return EXIT_OK


def _items(args, window):
    from workstation.core.printing import items_of

    if bool(args.files) + bool(args.study) + bool(args.series) != 1:
        raise CommandError("give FILE..., or --study UID, or --series UID (one of them)")
    if args.files:
        return items_of(args.files, window)
    from workstation.cli.verbs import open_cache

    with open_cache(args) as cache:
        if args.series:
            series = [args.series]
        else:
            series = [s.SeriesInstanceUID for s in cache.series(args.study)]
            if not series:
                raise CommandError(f"the cache holds no study {args.study}")
        paths = [i.path for uid in series for i in cache.instances(uid)]
    if not paths:
        what = f"series {args.series}" if args.series else f"study {args.study}"
        raise CommandError(f"the cache holds no images of {what}")
    return items_of(paths, window)


def print_images(args) -> int:
    from workstation.core.pixels.voi import Window
    from workstation.core.printing import FilmOptions, print_job

    if args.to_pdf or args.to_png:
        return print_to_file(args)
    if args.printer == FILE_PRINTER and not any(p.name == FILE_PRINTER for p in _settings(args).printers):
        raise CommandError("PRINTER 'file' prints to a file: give --to-pdf OUT.pdf or --to-png OUT_STEM")
    settings = _settings(args)
    printer = settings.printer(args.printer)
    window = Window(*args.window) if args.window else None
    items = _items(args, window)
    auto = (args.format or "").lower() == "auto"
    options = FilmOptions(display_format="" if auto else (args.format or ""), film_size=args.film_size or "",
                          orientation=args.orientation or "", copies=args.copies or 0, label=args.label, auto=auto,
                          annotate=args.annotate, true_size=args.true_size)

    def progress(done: int, total: int, what: str) -> None:
        if sys.stderr.isatty():
            print(f"\r{done}/{total} {what}", end="", file=sys.stderr, flush=True)

    from workstation.core.net.print_scu import PrintError

    try:
        try:
            report = print_job(printer, settings.ae_title, items, options, progress=progress,
                               on_event=lambda words: print(f"\nprinter: {words}" if sys.stderr.isatty()
                                                            else f"printer: {words}", file=sys.stderr))
        finally:
            if sys.stderr.isatty():
                print(file=sys.stderr)   # ends the progress line
    except PrintError as exc:
        done = exc.report
        if done is None or not done.films:
            raise
        error(f"{exc} ({done.films} film{'s' if done.films != 1 else ''} printed before)")
        if args.json:
            print_json({"films": done.films, "images": done.images, "status": "failed", "error": str(exc)})
        return EXIT_PARTIAL
    for words in report.warnings:
        print(f"warning: {words}", file=sys.stderr)
    if args.json:
        print_json({"films": report.films, "images": report.images, "status": report.status,
                    "warnings": report.warnings, "printer": report.printer.words() if report.printer else ""})
    else:
        print(f"{report.films} film{'s' if report.films != 1 else ''}, {report.images} image"
              f"{'s' if report.images != 1 else ''}: {report.status} on {printer.name}")
    return EXIT_OK


def file_printer(args):
    """The profile a print to file lays the films out with: the printer named PRINTER, or for 'file'
    with no printer of that name a default one that takes every film size."""
    from workstation.core.model.printer import FILM_SIZES_MM, Printer

    settings = _settings(args)
    if args.printer == FILE_PRINTER and not any(p.name == FILE_PRINTER for p in settings.printers):
        return Printer(FILE_PRINTER, "FILE", "localhost", 104, film_sizes=tuple(FILM_SIZES_MM))
    return settings.printer(args.printer)


def print_to_file(args) -> int:
    """`print PRINTER ... --to-pdf OUT.pdf | --to-png OUT_STEM`: the films the printer would get, written
    to files; nothing goes over the network."""
    from workstation.core.pixels.voi import Window
    from workstation.core.print_file import write_pdf, write_pngs
    from workstation.core.printing import FilmOptions, planned_films

    printer = file_printer(args)
    window = Window(*args.window) if args.window else None
    items = _items(args, window)
    auto = (args.format or "").lower() == "auto"
    options = FilmOptions(display_format="" if auto else (args.format or ""), film_size=args.film_size or "",
                          orientation=args.orientation or "", label=args.label, auto=auto,
                          annotate=args.annotate, true_size=args.true_size)
    plans = planned_films(printer, items, options)

    def progress(done: int, total: int, what: str) -> None:
        if sys.stderr.isatty():
            print(f"\r{done}/{total} {what}", end="", file=sys.stderr, flush=True)

    if args.to_pdf:
        write_pdf(plans, args.to_pdf, progress=progress)
        paths = [args.to_pdf]
    else:
        paths = [str(p) for p in write_pngs(plans, args.to_png, progress=progress)]
    if sys.stderr.isatty():
        print(file=sys.stderr)
    films, images = len(plans), sum(plan.count for plan in plans)
    if args.json:
        document = {"films": films, "images": images, "status": "written", "path": paths[0]}
        if args.to_png:
            document["paths"] = paths
        print_json(document)
    else:
        where = paths[0] if len(paths) == 1 else f"{paths[0]} ... {paths[-1]}"
        print(f"{films} film{'s' if films != 1 else ''}, {images} image{'s' if images != 1 else ''}: written to {where}")
    return EXIT_OK
