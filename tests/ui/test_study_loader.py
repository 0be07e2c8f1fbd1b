"""Many viewers over one arriving study: each grows as images reach the cache, through one loader."""

from __future__ import annotations

import pydicom

from workstation.core.cache import Cache
from workstation.core.settings import Settings
from workstation.services.cache_service import CacheService
from workstation.services.frame_service import FrameService
from workstation.services.jobs import JobRunner
from workstation.services.network_service import NetworkService
from workstation.services.study_loader_service import StudyLoaderService
from workstation.ui.viewer.study_viewer import StudyViewerWidget


def test_every_viewer_of_a_series_grows_as_its_images_arrive(qtbot, tmp_path, samples):
    files = sorted((samples / "dcm_qa_ct/In/Philips/S21570/S2020").iterdir())[:30]
    study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    cache = Cache(tmp_path / "home")
    runner = JobRunner()
    frames = FrameService()
    network = NetworkService(tmp_path / "home", cache, Settings(), coalesce_ms=20)
    loader = StudyLoaderService(cache, runner)
    network.instance_added.connect(loader.instances_added)
    cache_service = CacheService(cache, runner)
    try:
        opening = loader.open_study(study, transfer=None)
        with qtbot.waitSignal(opening.failed, timeout=10000) as failed:
            pass
        assert failed.args == ["This study has no series in the cache."]

        with qtbot.waitSignal(cache_service.import_paths(files[:3]).ended, timeout=20000):
            pass
        opening = loader.open_study(study)
        with qtbot.waitSignal(opening.opened, timeout=10000) as opened:
            pass
        shown = opened.args[0]
        viewers = [StudyViewerWidget(frames, loader, cache_service) for _ in range(3)]
        for viewer in viewers:
            viewer.open_study(shown)
            viewer.viewport.model.set_index(2)            # on the third image of the three
        with qtbot.waitSignal(cache_service.import_paths(files[3:]).ended, timeout=20000):
            pass
        qtbot.waitUntil(lambda: all(len(v.viewport.display_set) == 30 for v in viewers), timeout=10000)
        third = shown.display_sets[0].frames[2]
        assert all(v.viewport.model.current == third for v in viewers)   # the image shown stays
        for v in viewers:
            qtbot.waitUntil(lambda v=v: not v.viewport.model.loading, timeout=10000)
            position = v.viewport.model.frames.index(third) + 1
            assert f"Image {position} / 30" in v.viewport.corner_texts()["bottom_left"]
        assert loader.loader.feeds() == 1                 # one feed of the study, shared
        for viewer in viewers:
            viewer.deleteLater()
        qtbot.waitUntil(lambda: loader.loader.feeds() == 0, timeout=5000)   # closed viewers leave nothing
    finally:
        network.shutdown()
        runner.close()
        frames.shutdown()
        cache.close()
