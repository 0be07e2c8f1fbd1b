"""The composition root: settings, cache, services and the main window meet here only."""

from __future__ import annotations

import sys
from pathlib import Path

from workstation.core.logs import setup_logging
from workstation.core.paths import home_folder


def build(home: Path):
    """Create the services and the main window; returns (window, services) for tests too."""
    from workstation.core import children
    from workstation.core.cache import Cache
    from workstation.core.net import transport
    from workstation.core.settings import load_settings
    from workstation.services.cache_service import CacheService
    from workstation.services.frame_service import FrameService
    from workstation.services.jobs import JobRunner
    from workstation.services.network_service import NetworkService
    from workstation.ui.main_window import MainWindow

    children.use_start_method("forkserver")  # Qt's threads, which Python cannot see, make fork unsafe here
    transport.install()
    settings = load_settings(home)
    cache = Cache(home, quota_bytes=settings.cache_quota_bytes)
    runner = JobRunner()
    cache_service = CacheService(cache, runner)
    frames = FrameService()
    network = NetworkService(home, cache, settings)
    window = MainWindow(cache_service, frames, network)
    network.storage.start()  # its state (or a busy port, in words) reaches the status bar
    network.prepare_retrieval()
    return window, (cache, runner, cache_service, frames, network)


def shutdown(services) -> None:
    cache, runner, _cache_service, frames, network = services
    network.shutdown()
    runner.close()
    frames.shutdown()
    cache.close()


def run_gui(home: str | None = None, paths: list[str] | None = None, debug: bool = False) -> int:
    from PySide6.QtWidgets import QApplication

    home_path = home_folder(home)
    home_path.mkdir(parents=True, exist_ok=True)
    setup_logging(home_path, debug)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Workstation")
    app.setOrganizationName("workstation")
    from PySide6.QtGui import QIcon

    from workstation.core.resources import resource_path

    app.setWindowIcon(QIcon(str(resource_path("icons", "workstation.svg"))))
    window, services = build(home_path)
    window.show()
    if paths:
        window.import_paths([str(Path(p)) for p in paths], open_first=True)
    try:
        return app.exec()
    finally:
        shutdown(services)
