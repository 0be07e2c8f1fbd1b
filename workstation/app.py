"""The composition root: settings, cache, services and the main window meet here only."""

from __future__ import annotations

import sys
from pathlib import Path

from workstation.core.logs import setup_logging
from workstation.core.paths import home_folder


def build(home: Path):
    """Create the services and the main window; returns (window, services) for tests too, or (None, None)
    when the cache index is damaged and the user does not want it rebuilt."""
    from workstation.core import children
    from workstation.core.net import transport
    from workstation.core.settings import load_settings
    from workstation.services.cache_service import CacheService
    from workstation.services.frame_service import FrameService
    from workstation.services.jobs import JobRunner
    from workstation.services.network_service import NetworkService
    from workstation.ui.main_window import MainWindow
    from workstation.ui.window_state import WindowState

    children.use_start_method("forkserver")  # Qt's threads, which Python cannot see, make fork unsafe here
    transport.install()
    settings = load_settings(home)
    runner = JobRunner()
    cache = open_cache(home, settings.cache_quota_bytes, runner)
    if cache is None:
        runner.close()
        return None, None
    cache_service = CacheService(cache, runner)
    from workstation.core.viewer.overlay import all_keywords

    frames = FrameService(keywords=all_keywords(home))   # what the corner texts read of each header
    network = NetworkService(home, cache, settings)
    window = MainWindow(cache_service, frames, network)
    WindowState(home).attach(window)   # size, place, splitters, source as the window was last closed
    network.storage.start()  # its state (or a busy port, in words) reaches the status bar
    network.prepare_retrieval()
    return window, (cache, runner, cache_service, frames, network)


def open_cache(home: Path, quota_bytes: int | None, runner):
    """The cache; when its index is damaged, rebuilt from its files first if the user agrees (None if not)."""
    from workstation.core.cache import Cache, IndexDamaged, rebuild_index

    try:
        return Cache(home, quota_bytes=quota_bytes)
    except IndexDamaged as exc:
        from workstation.ui.index_repair import confirm_rebuild, tell_failure, wait_with_progress

        if not confirm_rebuild(exc.reason):
            return None
        job = runner.submit("rebuild the cache index",
                            lambda progress, cancel: rebuild_index(home, quota_bytes, progress, cancel))
        report, error = wait_with_progress(job, "Rebuilding the cache index")
        if error or report is None or not report.ok:
            tell_failure(error or "The cache index was rebuilt but the cache is still not consistent; "
                         "run 'workstation verify --repair' and see the log.")
            return None
        return Cache(home, quota_bytes=quota_bytes)


def shutdown(services) -> None:
    cache, runner, _cache_service, frames, network = services
    network.shutdown()
    runner.close()
    frames.shutdown()
    cache.close()


class HandedOverPaths:
    """What later starts on the same home handed over: the window comes to the front and imports and
    shows each in turn (as `workstation FOLDER` does), after any import already running."""

    def __init__(self, window) -> None:
        self.window = window
        self.pending: list[list[str]] = []
        window.import_ended.connect(self._next)

    def take(self, paths: list[str]) -> None:
        window = self.window
        if window.isMinimized():
            window.showNormal()
        window.raise_()
        window.activateWindow()
        if paths:
            self.pending.append(paths)
            self._next()

    def _next(self, *_ended) -> None:
        if self.pending and self.window.import_job is None:
            self.window.import_paths(self.pending.pop(0), open_first=True)


def run_gui(home: str | None = None, paths: list[str] | None = None, debug: bool = False) -> int:
    from workstation.services.single_instance import HandOver, InstanceServer, hand_over

    home_path = home_folder(home)
    home_path.mkdir(parents=True, exist_ok=True)
    setup_logging(home_path, debug)
    paths = [str(Path(p).resolve()) for p in paths or []]
    handed = hand_over(home_path, paths)   # before anything heavy: a second start only passes its paths on
    if handed is not HandOver.NO_WINDOW:
        return _handed_over_status(handed, home_path)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    instance = InstanceServer(home_path)
    if not instance.listen():   # another start on this home got there first, a moment ago
        return _handed_over_status(hand_over(home_path, paths), home_path)
    app.setApplicationName("Workstation")
    app.setOrganizationName("workstation")
    from PySide6.QtGui import QIcon

    from workstation.core.resources import resource_path

    app.setWindowIcon(QIcon(str(resource_path("icons", "workstation.svg"))))
    window, services = build(home_path)
    if window is None:
        instance.close()
        return 1  # the user declined to rebuild a damaged cache index
    handed_over = HandedOverPaths(window)
    instance.handed_over.connect(handed_over.take)
    window.show()
    if paths:
        window.import_paths(paths, open_first=True)
    try:
        return app.exec()
    finally:
        instance.close()
        shutdown(services)


def _handed_over_status(handed, home: Path) -> int:
    from workstation.services.single_instance import HandOver

    if handed is HandOver.DONE:
        return 0
    print(f"error: a window is already open on {home} but did not answer; close it (or end it if it hangs) "
          "and start again", file=sys.stderr)
    return 2
