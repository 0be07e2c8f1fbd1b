"""The network verbs: config, node, echo, find, retrieve, send, listen."""

from __future__ import annotations

import argparse
import sys

from workstation.cli.output import EXIT_OK, EXIT_PARTIAL, CommandError, print_json, print_table, warning
from workstation.core.paths import home_folder

VERBS = ("config", "node", "echo", "find", "retrieve", "send", "listen")


def add_parsers(sub, add_filters) -> None:
    p = sub.add_parser("config", help="read or change a setting (ae-title, port, ...)")
    config = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    s = config.add_parser("set", help="set KEY to VALUE")
    s.add_argument("key")
    s.add_argument("value")
    g = config.add_parser("get", help="print KEY's value")
    g.add_argument("key")

    p = sub.add_parser("node", help="the remote DICOM nodes (PACS) this workstation talks to")
    node = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    a = node.add_parser("add", help="add a node, or replace the one with that name")
    a.add_argument("name")
    a.add_argument("--aet", required=True, help="the node's AE title")
    a.add_argument("--host", required=True)
    a.add_argument("--port", required=True, type=int)
    a.add_argument("--method", choices=("get", "move"), default="get", help="preferred retrieval (default: get)")
    a.add_argument("--model", choices=("study", "patient"), default="study", help="query/retrieve root")
    a.add_argument("--tls-ca", default="", metavar="FILE")
    a.add_argument("--tls-cert", default="", metavar="FILE")
    a.add_argument("--tls-key", default="", metavar="FILE")
    a.add_argument("--connect-timeout", type=float, default=5.0, metavar="S")
    a.add_argument("--timeout", type=float, default=30.0, metavar="S", help="network and DIMSE timeout")
    a.add_argument("--max-associations", type=int, default=None, metavar="N",
                   help="most associations the node serves at once (default 4, as Orthanc's DicomThreadsCount); "
                        "a retrieval never opens more")
    ls = node.add_parser("list", help="list the nodes")
    ls.add_argument("--json", action="store_true")
    rm = node.add_parser("rm", help="remove a node")
    rm.add_argument("name")
    e = node.add_parser("echo", help="C-ECHO a node")
    e.add_argument("name")

    p = sub.add_parser("echo", help="C-ECHO a node: is it there and does it accept us?")
    p.add_argument("name")

    p = sub.add_parser("find", help="search a node (C-FIND)")
    p.add_argument("name")
    p.add_argument("--level", choices=("study", "series", "image"), default="study")
    add_filters(p)
    p.add_argument("--limit", type=int, default=None, help="stop after N results (default: the find-limit setting)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("retrieve", help="fetch a study (or series) from a node into the cache")
    p.add_argument("name")
    p.add_argument("--study", required=True, metavar="UID")
    p.add_argument("--series", action="append", default=[], metavar="UID", help="only this series (repeatable)")
    p.add_argument("--method", choices=("get", "move"), default=None, help="default: the node's method")
    p.add_argument("--associations", type=int, default=None, metavar="N",
                   help="parallel associations (default: the retrieve-associations setting)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("send", help="send a cached study (or series) to a node (C-STORE)")
    p.add_argument("name")
    p.add_argument("--study", required=True, metavar="UID")
    p.add_argument("--series", action="append", default=[], metavar="UID")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("listen", help="run the Storage SCP: receive pushed studies into the cache until Ctrl-C")
    p.add_argument("--port", type=int, default=None, help="default: the port setting")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")


def _home(args):
    return home_folder(args.home)


def _settings(args):
    from workstation.core.settings import load_settings

    return load_settings(_home(args))


def run(args: argparse.Namespace) -> int:
    from workstation.core.model.node import NodeError
    from workstation.core.net import transport
    from workstation.core.net.association import NetworkError

    transport.install()

    try:
        if args.verb == "config":
            return config(args)
        if args.verb == "node":
            return {"add": node_add, "list": node_list, "rm": node_rm, "echo": echo}[args.action](args)
        if args.verb == "echo":
            return echo(args)
        if args.verb == "find":
            return find(args)
        if args.verb == "retrieve":
            return retrieve(args)
        if args.verb == "send":
            return send(args)
        if args.verb == "listen":
            return listen(args)
    except (NodeError, NetworkError) as exc:
        raise CommandError(str(exc)) from None
    raise CommandError(f"unknown verb {args.verb}")


def config(args) -> int:
    from workstation.core.settings import CONFIG_KEYS, save_settings

    if args.key not in CONFIG_KEYS:
        raise CommandError(f"unknown setting {args.key!r}; known: {', '.join(CONFIG_KEYS)}")
    attribute, check = CONFIG_KEYS[args.key]
    settings = _settings(args)
    if args.action == "get":
        value = getattr(settings, attribute)
        print(" ".join(value) if isinstance(value, list) else ("" if value is None else value))
        return EXIT_OK
    try:
        setattr(settings, attribute, check(args.value))
    except ValueError as exc:
        raise CommandError(f"{args.key}: {exc}") from None
    save_settings(_home(args), settings)
    return EXIT_OK


def node_add(args) -> int:
    from workstation.core.model.node import Node
    from workstation.core.settings import save_settings

    settings = _settings(args)
    limit = {} if args.max_associations is None else {"max_associations": args.max_associations}
    settings.with_node(Node(
        name=args.name, aet=args.aet, host=args.host, port=args.port, method=args.method, model=args.model,
        tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
        connect_timeout=args.connect_timeout, network_timeout=args.timeout, **limit,
    ))
    save_settings(_home(args), settings)
    return EXIT_OK


def node_list(args) -> int:
    nodes = [n.to_json() for n in _settings(args).nodes]
    if args.json:
        print_json(nodes)
    else:
        print_table(nodes, ["name", "aet", "host", "port", "method", "model", "max_associations"])
    return EXIT_OK


def node_rm(args) -> int:
    from workstation.core.settings import save_settings

    settings = _settings(args)
    settings.without_node(args.name)
    save_settings(_home(args), settings)
    return EXIT_OK


def echo(args) -> int:
    from workstation.core.net.echo import echo as c_echo

    settings = _settings(args)
    seconds = c_echo(settings.node(args.name), settings.ae_title)
    print(f"{args.name}: C-ECHO succeeded in {seconds * 1000:.0f} ms")
    return EXIT_OK


FIND_COLUMNS = {
    "study": ["PatientName", "PatientID", "StudyDate", "ModalitiesInStudy", "StudyDescription",
              "AccessionNumber", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "StudyInstanceUID"],
    "series": ["SeriesNumber", "Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesInstanceUID"],
    "image": ["InstanceNumber", "SOPClassUID", "SOPInstanceUID"],
}


def find(args) -> int:
    from workstation.cli.verbs import filter_from_args
    from workstation.core.net.find import FindOutcome
    from workstation.core.net.find import find as c_find

    settings = _settings(args)
    node = settings.node(args.name)
    outcome = FindOutcome()
    limit = args.limit or settings.find_limit
    rows = []
    for record in c_find(node, settings.ae_title, args.level, filter_from_args(args), limit=limit, outcome=outcome):
        row = record.to_json()
        for local in ("pinned", "size_bytes", "last_access", "path"):
            row.pop(local, None)
        rows.append(row)
    if outcome.capped:
        warning(f"stopped after {limit} results (C-CANCEL sent); narrow the search or raise --limit")
    if args.json:
        print_json(rows)
    else:
        print_table(rows, FIND_COLUMNS[args.level])
    return EXIT_OK


def _open_cache(args, settings):
    from workstation.core.cache import Cache

    return Cache(_home(args), quota_bytes=settings.cache_quota_bytes)


def retrieve(args) -> int:
    from workstation.cli.progress import TerminalProgress
    from workstation.core.net.retrieve import retrieve as c_retrieve

    settings = _settings(args)
    node = settings.node(args.name)
    with _open_cache(args, settings) as cache, TerminalProgress("retrieving") as bar:
        report = c_retrieve(node, settings.ae_title, cache, args.study, series_uids=args.series or None,
                            method=args.method, associations=args.associations or settings.retrieve_associations,
                            own_port=settings.port, progress=bar)
    doc = report.to_json()
    for error in report.errors:
        warning(error)
    if args.json:
        print_json(doc)
    else:
        print(f"retrieved {report.completed} instances ({report.bytes / 1e6:.1f} MB) in {report.seconds:.2f} s; "
              f"{report.already_local} already local, {report.failed} failed, {report.missing_count} missing")
    return EXIT_OK if not (report.missing_count or report.failed) else EXIT_PARTIAL


def send(args) -> int:
    from workstation.cli.progress import TerminalProgress
    from workstation.core.net.send import send as c_send

    settings = _settings(args)
    node = settings.node(args.name)
    with _open_cache(args, settings) as cache, TerminalProgress("sending") as bar:
        report = c_send(node, settings.ae_title, cache, args.study, series_uids=args.series or None, progress=bar)
    if args.json:
        print_json(report.to_json())
    else:
        print(f"sent {report.sent} instances in {report.seconds:.2f} s; {report.failed} failed")
        for failure in report.failures:
            warning(f"{failure['SOPInstanceUID']}: {failure['reason']}")
    return EXIT_OK if not report.failed else EXIT_PARTIAL


def listen(args) -> int:
    import signal
    import threading

    from workstation.core.net.storage_scp import StorageServer, default_receivers

    settings = _settings(args)
    port = args.port or settings.port
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    with _open_cache(args, settings) as cache:
        server = StorageServer(cache, settings.ae_title, port, host=args.host,
                               allowed_calling_aets=settings.allowed_calling_aets, receivers=default_receivers())
        try:
            server.start()
        except OSError as exc:
            raise CommandError(f"{exc}; choose another with --port N or 'workstation config set port N'") from None
        server.subscribe(lambda calling, sop, size: print(f"received {sop} from {calling}", flush=True))
        server.subscribe_refused(lambda calling, sop, status, reason: warning(
            f"refused {sop} from {calling} (status 0x{status:04X}): {reason}"))
        print(f"listening as {settings.ae_title} on port {port}; Ctrl-C stops", file=sys.stderr, flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return EXIT_OK
