"""The frame service decodes on workers, newest request first, and reports bad frames in words."""

from __future__ import annotations

import threading

import pytest

from workstation.core.model.display_set import FrameRef
from workstation.services.frame_service import FrameService


@pytest.fixture
def service(qtbot):
    s = FrameService(threads=2)
    yield s
    s.shutdown()
    qtbot.wait(50)  # deliver the signals still queued from the workers while the service is alive


def test_only_the_newest_request_of_a_viewport_is_decoded(qtbot, service, samples):
    files = sorted((samples / "dcm_qa_ct/In/Philips/S21570/S2020").iterdir())[:60]
    refs = [FrameRef(str(p), 0, p.name) for p in files]
    loaded: list[int] = []
    threads: set[str] = set()
    service.frame_loaded.connect(lambda viewport, ref, renderer: loaded.append(refs.index(ref)))
    original = service.cache.load

    def spy(ref):
        threads.add(threading.current_thread().name)
        return original(ref)

    service.cache.load = spy
    viewport = service.register()
    for ref in refs:
        service.request(viewport, ref)
    qtbot.waitUntil(lambda: len(refs) - 1 in loaded, timeout=10000)
    service.pool.waitForDone(10000)
    qtbot.wait(50)  # a request already decoding when it was superseded may still answer (the viewport ignores it)
    assert len(loaded) < len(refs) / 2  # superseded requests were dropped before decoding
    assert threading.main_thread().name not in threads
    renderer = service.cached(refs[-1])
    assert renderer is not None and renderer.render().shape == (512, 512)


def test_an_undecodable_frame_is_reported_with_its_reason(qtbot, service, samples):
    bad = samples / "nema_wg04/JPLY/MR1_JPLY"
    with qtbot.waitSignal(service.frame_failed, timeout=10000) as failed:
        service.request(service.register(), FrameRef(str(bad), 0, "x"))
    assert failed.args[1] == FrameRef(str(bad), 0, "x")
    assert "JPEG Extended" in failed.args[2]


def test_a_closed_viewport_is_forgotten_and_hears_nothing_more(qtbot, service, samples):
    """Viewports come and go with layouts: the service keeps nothing for a closed one, and what it
    had pending is neither decoded for it nor delivered to it."""
    from workstation.ui.viewer.viewport import ViewportWidget

    files = sorted((samples / "dcm_qa_ct/In/Philips/S21570/S2020").iterdir())[:12]
    refs = [FrameRef(str(p), 0, p.name) for p in files]
    widgets = [ViewportWidget(service) for _ in range(5)]
    ids = [w.viewport_id for w in widgets]
    assert len(set(ids)) == 5
    for w, ref in zip(widgets, refs[:5], strict=True):
        service.request(w.viewport_id, ref)
    assert service.viewports() == 5
    for w in widgets[:4]:
        w.deleteLater()
    qtbot.waitUntil(lambda: service.viewports() == 1, timeout=5000)
    service.pool.waitForDone(10000)
    qtbot.wait(50)

    heard: list[int] = []
    service.frame_loaded.connect(lambda viewport_id, ref, renderer: heard.append(viewport_id))
    service.frame_failed.connect(lambda viewport_id, ref, reason: heard.append(viewport_id))
    for ref in refs[5:]:
        service.request(ids[0], ref)   # a request that was pending when its viewport closed
        service.request(ids[4], ref)
    service.forget(ids[0])
    service.pool.waitForDone(10000)
    qtbot.waitUntil(lambda: ids[4] in heard, timeout=5000)
    qtbot.wait(50)
    assert ids[0] not in heard
    assert service.viewports() == 1


def test_the_frame_cache_keeps_frames_within_a_byte_budget(samples):
    """The cache counts what each renderer keeps (FrameRenderer.nbytes): with room for five CT slices
    it holds the five newest; a single-frame file keeps no source, a multi-frame file one."""
    from pydicom.data import get_testdata_file

    from workstation.core.pixels import FrameRenderer, ImageSource
    from workstation.services.frame_service import _FrameCache

    files = sorted((samples / "dcm_qa_ct/In/Philips/S21570/S2020").iterdir())[:12]
    refs = [FrameRef(str(p), 0, p.name) for p in files]
    one = FrameRenderer(ImageSource.open(files[0])).nbytes
    assert one == 512 * 512 * 2
    cache = _FrameCache(budget=5 * one + one // 2)
    for ref in refs:
        cache.load(ref)
    assert [ref for ref in refs if cache.get(ref) is not None] == refs[-5:]
    assert cache.nbytes == 5 * one and not cache._sources
    cache.get(refs[-5])            # used again: the oldest is now the next one
    cache.load(refs[0])
    assert cache.get(refs[-5]) is not None and cache.get(refs[-4]) is None

    cine = get_testdata_file("emri_small.dcm", download=False)   # 10 frames of 64 x 64
    for frame in range(4):
        cache.load(FrameRef(cine, frame, "cine"))
    assert list(cache._sources) == [cine] and cache.nbytes <= cache.budget
