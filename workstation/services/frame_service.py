"""Decodes frames for the viewer on a worker, newest request first, with an LRU of results.

Scrolling fast through a stack queues many requests; only the newest one per viewport is
decoded, the others are dropped before they start. Each viewport also prefetches its display set
in the background (a newer prefetch of the same viewport replaces the older). Viewports are known
by an id from `register()`; a closed viewport calls `forget(id)` and its pending requests come to
nothing. Answers name the frame they are for (`FrameRef`), so a viewport takes only the one it is
on. A decoded frame keeps its modality values in a `FrameRenderer`, so window/level on the GUI
thread only re-runs the VOI lookup.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import OrderedDict

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from workstation.core.model.display_set import FrameRef
from workstation.core.pixels.errors import PixelDataError
from workstation.core.pixels.image import ImageSource
from workstation.core.pixels.render import FrameRenderer


class _FrameCache:
    """A thread-safe LRU of decoded frames within a byte budget, and of open multi-frame sources
    (their header read once; they decode the file's other frames later). A single-frame file's source
    lives only as long as its frame's renderer."""

    def __init__(self, budget: int = 2 << 30, sources: int = 32, keywords: tuple[str, ...] = (),
                 make=None) -> None:
        self.keywords = keywords
        self.make = make
        """make(ref) -> FrameRenderer for frames that come from no file (MPR planes); None: decode files."""
        self._lock = threading.Lock()
        self._frames: OrderedDict[tuple[str, int], FrameRenderer] = OrderedDict()
        self._sources: OrderedDict[str, ImageSource] = OrderedDict()
        self.budget = budget
        """Bytes the kept renderers (FrameRenderer.nbytes) and multi-frame sources' own frames may hold."""
        self.max_sources = sources
        self._frame_bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held now: the kept renderers' and the kept multi-frame sources' decoded frames."""
        with self._lock:
            return self._frame_bytes + sum(source.nbytes for source in self._sources.values())

    def get(self, ref: FrameRef) -> FrameRenderer | None:
        with self._lock:
            key = (ref.path, ref.frame)
            hit = self._frames.get(key)
            if hit is not None:
                self._frames.move_to_end(key)
            return hit

    def discard(self, refs) -> None:
        """Let go of these frames (a closed study's): their memory goes back."""
        with self._lock:
            for ref in refs:
                old = self._frames.pop((ref.path, ref.frame), None)
                if old is not None:
                    self._frame_bytes -= old.nbytes
                self._sources.pop(ref.path, None)

    def load(self, ref: FrameRef) -> FrameRenderer:
        hit = self.get(ref)
        if hit is not None:
            return hit
        if self.make is not None:
            return self._keep(ref, self.make(ref))
        with self._lock:
            source = self._sources.get(ref.path)
            if source is not None:
                self._sources.move_to_end(ref.path)
        if source is None:
            source = ImageSource.open(ref.path)
            if source.number_of_frames > 1:
                with self._lock:
                    self._sources[ref.path] = source
                    while len(self._sources) > self.max_sources:
                        self._sources.popitem(last=False)
        return self._keep(ref, FrameRenderer(source, ref.frame, self.keywords))

    def _keep(self, ref: FrameRef, renderer: FrameRenderer) -> FrameRenderer:
        with self._lock:
            key = (ref.path, ref.frame)
            old = self._frames.pop(key, None)
            if old is not None:
                self._frame_bytes -= old.nbytes
            self._frames[key] = renderer
            self._frame_bytes += renderer.nbytes
            held = self._frame_bytes + sum(s.nbytes for s in self._sources.values())
            while len(self._frames) > 1 and held > self.budget:
                _, evicted = self._frames.popitem(last=False)
                self._frame_bytes -= evicted.nbytes
                held -= evicted.nbytes
            while len(self._sources) > 1 and held > self.budget:   # the newest source is the one in use
                _, dropped = self._sources.popitem(last=False)
                held -= dropped.nbytes
        return renderer


class FrameService(QObject):
    """frame_loaded(viewport_id, ref, renderer) or frame_failed(viewport_id, ref, reason)."""

    frame_loaded = Signal(int, object, object)
    frame_failed = Signal(int, object, str)
    _wake = Signal()

    def __init__(self, threads: int = 2, keywords: tuple[str, ...] | frozenset[str] = (), make=None,
                 budget: int = 2 << 30) -> None:
        """`make(ref) -> FrameRenderer` serves frames that come from no file (an MPR plane's positions);
        without it, frames are decoded from their files."""
        super().__init__()
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake.connect(self._deliver)
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(threads)
        self.cache = _FrameCache(budget, keywords=tuple(sorted(keywords)), make=make)
        self._prefetching: set[tuple[str, int]] = set()
        self._latest: dict[int, int] = {}      # viewport id -> generation of its newest request
        self._prefetch: dict[int, int] = {}    # viewport id -> generation of its newest prefetch
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._generation = 0

    def register(self) -> int:
        """A new viewport's id, for its requests and for `forget` when it closes."""
        viewport_id = next(self._ids)
        with self._lock:
            self._latest[viewport_id] = 0
        return viewport_id

    def forget(self, viewport_id: int) -> None:
        """The viewport closed: its pending requests are dropped and nothing more is kept for it."""
        with self._lock:
            self._latest.pop(viewport_id, None)
            self._prefetch.pop(viewport_id, None)

    def cached(self, ref: FrameRef) -> FrameRenderer | None:
        return self.cache.get(ref)

    def release(self, refs) -> None:
        """Drop these frames from the cache (the study they belong to was closed)."""
        self.cache.discard(list(refs))

    def request(self, viewport_id: int, ref: FrameRef) -> None:
        """Ask for a frame; an older pending request of the same viewport is dropped."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._latest[viewport_id] = generation
        self.pool.start(_DecodeTask(self, viewport_id, ref, generation))

    def prefetch(self, refs: list[FrameRef], viewport_id: int | None = None) -> None:
        """Decode frames in the background so scrolling finds them ready; with a viewport id, a newer
        prefetch of that viewport drops what is left of this one. Frames a function makes (MPR planes)
        are made when asked for only: a plane is cut in milliseconds, and a plane's every position
        would cost more memory than the volume."""
        if self.cache.make is not None:
            return
        with self._lock:
            self._generation += 1
            generation = self._generation
            if viewport_id is not None:
                self._prefetch[viewport_id] = generation
        for ref in refs:
            key = (ref.path, ref.frame)
            with self._lock:
                if key in self._prefetching:
                    continue
                self._prefetching.add(key)
            if self.cache.get(ref) is None:
                self.pool.start(_PrefetchTask(self, ref, viewport_id, generation), priority=-1)
            else:
                self.prefetched(ref)

    def prefetched(self, ref: FrameRef) -> None:
        with self._lock:
            self._prefetching.discard((ref.path, ref.frame))

    def prefetch_wanted(self, viewport_id: int | None, generation: int) -> bool:
        if viewport_id is None:
            return True
        with self._lock:
            return self._prefetch.get(viewport_id) == generation

    def post(self, signal_name: str, *args) -> None:
        """From a worker: queue an outcome for the GUI thread (no Python object rides a queued signal)."""
        self._outbox.put((signal_name, args))
        self._wake.emit()

    def _deliver(self) -> None:
        while True:
            try:
                name, args = self._outbox.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                known = args[0] in self._latest
            if known:   # nothing reaches a viewport that has closed meanwhile
                getattr(self, name).emit(*args)

    def is_current(self, viewport_id: int, generation: int) -> bool:
        with self._lock:
            return self._latest.get(viewport_id) == generation

    def viewports(self) -> int:
        """How many viewports are registered (closed ones are forgotten)."""
        with self._lock:
            return len(self._latest)

    def shutdown(self) -> None:
        self.pool.clear()
        self.pool.waitForDone(5000)


class _DecodeTask(QRunnable):
    def __init__(self, service: FrameService, viewport: int, ref: FrameRef, generation: int) -> None:
        super().__init__()
        self.service, self.viewport, self.ref, self.generation = service, viewport, ref, generation

    def run(self) -> None:
        if not self.service.is_current(self.viewport, self.generation):
            return
        try:
            renderer = self.service.cache.load(self.ref)
        except PixelDataError as exc:
            self.service.post("frame_failed", self.viewport, self.ref, str(exc))
        except Exception as exc:
            self.service.post("frame_failed", self.viewport, self.ref, f"cannot show this image: {exc}")
        else:
            self.service.post("frame_loaded", self.viewport, self.ref, renderer)


class _PrefetchTask(QRunnable):
    def __init__(self, service: FrameService, ref: FrameRef, viewport: int | None, generation: int) -> None:
        super().__init__()
        self.service, self.ref, self.viewport, self.generation = service, ref, viewport, generation

    def run(self) -> None:
        try:
            if self.service.prefetch_wanted(self.viewport, self.generation):
                self.service.cache.load(self.ref)
        except Exception:
            pass  # the viewer reports the error when the user reaches that frame
        finally:
            self.service.prefetched(self.ref)
