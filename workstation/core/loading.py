"""Opening studies and series for the viewer, and growing them as their images arrive. Qt-free.

`open_study` shows a series of a study as soon as one of its images is in the cache: at once for
a cached study, on the first arrival for one being retrieved, and in words when a retrieval ends
with nothing to show. A `SeriesFeed` follows one series while it grows (a retrieval, a push, an
import); any number of viewports subscribe to it, and each arrival re-reads the series once
however many are watching (one read at a time; arrivals during a read cause one more).

All methods are called on one thread (the GUI thread in the window); `run(work, done, failed)`
runs `work` elsewhere and calls `done(result)` or `failed(message)` back on that thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workstation.core.cache import Cache, QueryFilter
from workstation.core.model import Series
from workstation.core.model.display_set import DisplaySet, display_set_for

Run = Callable[[Callable[[], Any], Callable[[Any], None], Callable[[str], None]], None]


def read_display_set(cache: Cache, series_uid: str) -> DisplaySet:
    """The frames of a cached series, with its study; opening it counts as a use for eviction."""
    found = cache.query("series", QueryFilter(SeriesInstanceUID=series_uid), limit=1)
    if not found:
        raise LookupError(f"series {series_uid} is no longer in the cache")
    series = found[0]
    studies = cache.studies(QueryFilter(StudyInstanceUID=series.StudyInstanceUID), limit=1)
    cache.touch(series.StudyInstanceUID)
    return display_set_for(series, cache.instances(series_uid), studies[0] if studies else None)


def first_to_show(series: list[Series], wanted: str | None = None) -> str | None:
    """The series to open: the wanted one when it has images here, else the one with most images
    (a study's stack rather than its one-image scout; hanging protocols will choose better)."""
    local = [s for s in series if s.NumberOfSeriesRelatedInstances]
    if wanted is not None:
        local = [s for s in local if s.SeriesInstanceUID == wanted]
    if not local:
        return None
    return max(local, key=lambda s: s.NumberOfSeriesRelatedInstances).SeriesInstanceUID   # first of equals


class SeriesFeed:
    """One series as the cache holds it; listeners hear of every change in its number of frames."""

    def __init__(self, loader: StudyLoader, series_uid: str) -> None:
        self.loader = loader
        self.key = series_uid
        self.display_set: DisplaySet | None = None
        self._listeners: list[Callable[[DisplaySet], None]] = []
        self._next_read: list[tuple[Callable[[DisplaySet], None], Callable[[str], None]]] = []
        self._reading = False
        self._again = False

    def subscribe(self, listener: Callable[[DisplaySet], None]) -> Callable[[], None]:
        """Hear of growth until the returned function is called (a closed viewport calls it)."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
            self.loader._prune(self)

        return unsubscribe

    @property
    def idle(self) -> bool:
        return not self._listeners and not self._next_read and not self._reading

    def refresh(self, then: tuple[Callable[[DisplaySet], None], Callable[[str], None]] | None = None) -> None:
        """Read the series again; `then` = (done, failed) hears of that read's outcome."""
        if then is not None:
            self._next_read.append(then)
        if self._reading:
            self._again = True
            return
        self._reading = True
        cache, key = self.loader.cache, self.key
        self.loader.run(lambda: read_display_set(cache, key), self._read, self._failed)

    def _read(self, display_set: DisplaySet) -> None:
        changed = self.display_set is None or len(display_set) != len(self.display_set)
        self.display_set = display_set
        listeners = list(self._listeners)   # not those subscribing from the callbacks: they have it
        self._end_read(lambda done, failed: done(display_set))
        if changed:
            for listener in listeners:
                listener(display_set)

    def _failed(self, message: str) -> None:
        self._end_read(lambda done, failed: failed(message))

    def _end_read(self, tell) -> None:
        self._reading = False
        waiting, self._next_read = self._next_read, []
        for then in waiting:
            tell(*then)
        if self._again:
            self._again = False
            self.refresh()
        else:
            self.loader._prune(self)


@dataclass(eq=False)
class Opening:
    """A request to show a study or series; `on_opened(display_set)` or `on_failed(message)`, once."""

    study_uid: str | None
    series_uid: str | None
    arriving: bool
    on_opened: Callable[[DisplaySet], None]
    on_failed: Callable[[str], None]
    state: str = "waiting"          # waiting, reading, opened, failed, cancelled
    ended_reason: str = ""          # why the retrieval bringing it ended, when it did
    _listing: bool = field(default=False, repr=False)

    def cancel(self) -> None:
        """A newer request replaced this one: it says nothing more (the loader drops it soon after)."""
        if self.state in ("waiting", "reading"):
            self.state = "cancelled"


class StudyLoader:
    def __init__(self, cache: Cache, run: Run) -> None:
        self.cache = cache
        self.run = run
        self._feeds: dict[str, SeriesFeed] = {}
        self._openings: list[Opening] = []

    def feed(self, series_uid: str) -> SeriesFeed:
        """The shared feed of a series (created on first use, dropped when nobody needs it)."""
        feed = self._feeds.get(series_uid)
        if feed is None:
            feed = self._feeds[series_uid] = SeriesFeed(self, series_uid)
        return feed

    def watch(self, series_uid: str, listener: Callable[[DisplaySet], None],
              shown: DisplaySet | None = None) -> Callable[[], None]:
        """`listener(display_set)` whenever the series' number of frames changes from `shown`."""
        feed = self.feed(series_uid)
        unsubscribe = feed.subscribe(listener)
        if shown is not None and (feed.display_set is None or len(shown) > len(feed.display_set)):
            feed.display_set = shown
        elif shown is not None and len(feed.display_set) > len(shown):
            listener(feed.display_set)   # another viewport's read already saw more of the series
        return unsubscribe

    def feeds(self) -> int:
        return len(self._feeds)

    def open_series(self, series_uid: str, on_opened, on_failed) -> Opening:
        opening = Opening(None, series_uid, False, on_opened, on_failed)
        self._read(opening, series_uid)
        return opening

    def open_study(self, study_uid: str, on_opened, on_failed, series_uid: str | None = None,
                   arriving: bool = False) -> Opening:
        """Show `series_uid` (or the study's first series with images) as soon as it is local;
        `arriving`: a retrieval is bringing the study, so wait for its first image instead of failing."""
        opening = Opening(study_uid, series_uid, arriving, on_opened, on_failed)
        self._openings = [o for o in self._openings if o.state == "waiting"]   # drop cancelled ones
        self._openings.append(opening)
        self._list(opening)
        return opening

    # --- what the window hears from the network and the cache ---------------------------------

    def instances_added(self, study_uid: str, series_uid: str) -> None:
        """Images of a series reached the cache (coalesced announcements)."""
        for opening in list(self._openings):
            if (opening.state == "waiting" and opening.study_uid == study_uid
                    and opening.series_uid in (None, series_uid)):
                self._read(opening, series_uid)
        feed = self._feeds.get(series_uid)
        if feed is not None and feed._listeners:
            feed.refresh()

    def arrival_ended(self, study_uid: str, reason: str = "") -> None:
        """The retrieval bringing a study ended: open what is local, or say why nothing is."""
        for opening in list(self._openings):
            if opening.study_uid == study_uid and opening.state == "waiting":
                opening.arriving = False
                opening.ended_reason = reason
                self._list(opening)

    # --- internals ----------------------------------------------------------------------------

    def _list(self, opening: Opening) -> None:
        if opening._listing:
            return
        opening._listing = True
        cache, study_uid = self.cache, opening.study_uid

        def listed(series: list[Series]) -> None:
            opening._listing = False
            if opening.state != "waiting":
                return
            chosen = first_to_show(series, opening.series_uid)
            if chosen is not None:
                self._read(opening, chosen)
            elif not opening.arriving:
                reason = opening.ended_reason
                self._fail(opening, f"Could not open the study: {reason}" if reason
                           else "This study has no series in the cache.")

        def failed(message: str) -> None:
            opening._listing = False
            if opening.state == "waiting" and not opening.arriving:
                self._fail(opening, message)

        self.run(lambda: cache.series(study_uid), listed, failed)

    def _read(self, opening: Opening, series_uid: str) -> None:
        if opening.state not in ("waiting",):
            return
        opening.state = "reading"

        def done(display_set: DisplaySet) -> None:
            if opening.state == "reading":
                opening.state = "opened"
                self._forget(opening)
                opening.on_opened(display_set)

        def failed(message: str) -> None:
            if opening.state == "reading":
                self._fail(opening, message)

        self.feed(series_uid).refresh((done, failed))

    def _fail(self, opening: Opening, message: str) -> None:
        opening.state = "failed"
        self._forget(opening)
        opening.on_failed(message)

    def _forget(self, opening: Opening) -> None:
        if opening in self._openings:
            self._openings.remove(opening)

    def _prune(self, feed: SeriesFeed) -> None:
        if feed.idle and self._feeds.get(feed.key) is feed:
            del self._feeds[feed.key]
