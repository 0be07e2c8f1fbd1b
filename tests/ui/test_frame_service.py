"""The frame service decodes on workers, newest request first, and reports bad frames in words."""

from __future__ import annotations

import threading

import pytest

from workstation.core.model.display_set import FrameRef
from workstation.services.frame_service import FrameService


@pytest.fixture
def service():
    s = FrameService(threads=2)
    yield s
    s.shutdown()


def test_only_the_newest_request_of_a_viewport_is_decoded(qtbot, service, samples):
    files = sorted((samples / "dcm_qa_ct/In/Philips/S21570/S2020").iterdir())[:60]
    refs = [FrameRef(str(p), 0, p.name) for p in files]
    loaded: list[int] = []
    threads: set[str] = set()
    service.frame_loaded.connect(lambda viewport, index, renderer: loaded.append(index))
    original = service.cache.load

    def spy(ref):
        threads.add(threading.current_thread().name)
        return original(ref)

    service.cache.load = spy
    viewport = object()
    with qtbot.waitSignal(service.frame_loaded, timeout=10000,
                          check_params_cb=lambda v, index, r: index == len(refs) - 1):
        for i, ref in enumerate(refs):
            service.request(viewport, i, ref)
    assert loaded[-1] == len(refs) - 1
    assert len(loaded) < len(refs) / 2  # superseded requests were dropped before decoding
    assert threading.main_thread().name not in threads
    renderer = service.cached(refs[-1])
    assert renderer is not None and renderer.render().shape == (512, 512)


def test_an_undecodable_frame_is_reported_with_its_reason(qtbot, service, samples):
    bad = samples / "nema_wg04/JPLY/MR1_JPLY"
    with qtbot.waitSignal(service.frame_failed, timeout=10000) as failed:
        service.request("viewport", 0, FrameRef(str(bad), 0, "x"))
    assert failed.args[1] == 0
    assert "JPEG Extended" in failed.args[2]
