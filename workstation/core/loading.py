"""Opening studies for the viewer, and growing them as their images arrive. Qt-free.

A study opens as its display sets (`StudySets`) as soon as one of its images is in the cache: at
once for a cached study, on the first arrival for one being retrieved, and in words when a
retrieval ends with nothing to show. A `StudyFeed` follows one study while it grows (a retrieval,
a push, an import); any number of viewers subscribe to it, and each arrival re-reads the study
once however many are watching (one read at a time; arrivals during a read cause one more; only
series whose number of instances changed are read again).

All methods are called on one thread (the GUI thread in the window); `run(work, done, failed)`
runs `work` elsewhere and calls `done(result)` or `failed(message)` back on that thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workstation.core.cache import Cache, QueryFilter
from workstation.core.model import Series, Study
from workstation.core.model.display_set import DisplaySet, build_display_sets

Run = Callable[[Callable[[], Any], Callable[[Any], None], Callable[[str], None]], None]


@dataclass(frozen=True)
class StudySets:
    """A study's display sets as the cache holds them, series by series in SeriesNumber order."""

    study: Study | None
    StudyInstanceUID: str
    series: tuple[Series, ...] = ()
    display_sets: tuple[DisplaySet, ...] = ()

    @property
    def frames(self) -> int:
        return sum(len(d) for d in self.display_sets)

    def find(self, key: str) -> DisplaySet | None:
        return next((d for d in self.display_sets if d.key == key), None)

    def of_series(self, series_uid: str) -> list[DisplaySet]:
        return [d for d in self.display_sets if d.SeriesInstanceUID == series_uid]

    def shape(self) -> tuple[tuple[str, int], ...]:
        """What changes when images arrive: each display set's key and length."""
        return tuple((d.key, len(d)) for d in self.display_sets)


def read_study(cache: Cache, study_uid: str, known: StudySets | None = None) -> StudySets:
    """The display sets of a cached study; series that `known` already holds with the same number of
    instances are not read again. Opening a study counts as a use for eviction."""
    studies = cache.studies(QueryFilter(StudyInstanceUID=study_uid), limit=1)
    study = studies[0] if studies else None
    series = cache.series(study_uid)
    before = {s.SeriesInstanceUID: s for s in known.series} if known is not None else {}
    display_sets: list[DisplaySet] = []
    for s in series:
        old = before.get(s.SeriesInstanceUID)
        if old is not None and old.NumberOfSeriesRelatedInstances == s.NumberOfSeriesRelatedInstances:
            display_sets.extend(known.of_series(s.SeriesInstanceUID))
        elif s.NumberOfSeriesRelatedInstances:
            display_sets.extend(build_display_sets(s, cache.instance_records(s.SeriesInstanceUID), study))
    if study is not None:
        cache.touch(study_uid)
    return StudySets(study, study_uid, tuple(series), tuple(display_sets))


def study_of_series(cache: Cache, series_uid: str) -> str:
    found = cache.query("series", QueryFilter(SeriesInstanceUID=series_uid), limit=1)
    if not found:
        raise LookupError(f"series {series_uid} is no longer in the cache")
    return found[0].StudyInstanceUID


class StudyFeed:
    """One study as the cache holds it; listeners hear of every change in its display sets' frames."""

    def __init__(self, loader: StudyLoader, study_uid: str) -> None:
        self.loader = loader
        self.key = study_uid
        self.sets: StudySets | None = None
        self._listeners: list[Callable[[StudySets], None]] = []
        self._next_read: list[tuple[Callable[[StudySets], None], Callable[[str], None]]] = []
        self._reading = False
        self._again = False

    def subscribe(self, listener: Callable[[StudySets], None]) -> Callable[[], None]:
        """Hear of growth until the returned function is called (a closed viewer calls it)."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
            self.loader._prune(self)

        return unsubscribe

    @property
    def idle(self) -> bool:
        return not self._listeners and not self._next_read and not self._reading

    @property
    def watched(self) -> bool:
        return bool(self._listeners)

    def refresh(self, then: tuple[Callable[[StudySets], None], Callable[[str], None]] | None = None) -> None:
        """Read the study again; `then` = (done, failed) hears of that read's outcome."""
        if then is not None:
            self._next_read.append(then)
        if self._reading:
            self._again = True
            return
        self._reading = True
        cache, key, known = self.loader.cache, self.key, self.sets
        self.loader.run(lambda: read_study(cache, key, known), self._read, self._failed)

    def _read(self, sets: StudySets) -> None:
        changed = self.sets is None or sets.shape() != self.sets.shape()
        self.sets = sets
        listeners = list(self._listeners)   # not those subscribing from the callbacks: they have it
        self._end_read(lambda done, failed: done(sets))
        if changed:
            for listener in listeners:
                listener(sets)

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
    """A request to show a study (or one of its series); `on_opened(sets)` or `on_failed(message)`, once."""

    study_uid: str | None
    series_uid: str | None
    arriving: bool
    on_opened: Callable[[StudySets], None]
    on_failed: Callable[[str], None]
    state: str = "waiting"          # waiting, reading, opened, failed, cancelled
    ended_reason: str = ""          # why the retrieval bringing it ended, when it did
    _pending: bool = field(default=False, repr=False)

    def cancel(self) -> None:
        """A newer request replaced this one: it says nothing more (the loader drops it soon after)."""
        if self.state in ("waiting", "reading"):
            self.state = "cancelled"

    def shows(self, sets: StudySets) -> bool:
        """Whether `sets` has something of what was asked for."""
        if self.series_uid is not None:
            return any(len(d) for d in sets.of_series(self.series_uid))
        return sets.frames > 0


class StudyLoader:
    def __init__(self, cache: Cache, run: Run) -> None:
        self.cache = cache
        self.run = run
        self._feeds: dict[str, StudyFeed] = {}
        self._openings: list[Opening] = []

    def feed(self, study_uid: str) -> StudyFeed:
        """The shared feed of a study (created on first use, dropped when nobody needs it)."""
        feed = self._feeds.get(study_uid)
        if feed is None:
            feed = self._feeds[study_uid] = StudyFeed(self, study_uid)
        return feed

    def watch(self, study_uid: str, listener: Callable[[StudySets], None],
              shown: StudySets | None = None) -> Callable[[], None]:
        """`listener(sets)` whenever the study's display sets change from `shown`."""
        feed = self.feed(study_uid)
        unsubscribe = feed.subscribe(listener)
        if shown is not None and (feed.sets is None or shown.frames > feed.sets.frames):
            feed.sets = shown
        elif shown is not None and feed.sets.shape() != shown.shape():
            listener(feed.sets)   # another viewer's read already saw more of the study
        return unsubscribe

    def feeds(self) -> int:
        return len(self._feeds)

    def open_series(self, series_uid: str, on_opened, on_failed) -> Opening:
        """Open the study of a cached series, asking for that series."""
        opening = Opening(None, series_uid, False, on_opened, on_failed)
        cache = self.cache

        def found(study_uid: str) -> None:
            if opening.state == "waiting":
                opening.study_uid = study_uid
                self._read(opening)

        def failed(message: str) -> None:
            if opening.state == "waiting":
                self._fail(opening, message)

        self.run(lambda: study_of_series(cache, series_uid), found, failed)
        return opening

    def open_study(self, study_uid: str, on_opened, on_failed, series_uid: str | None = None,
                   arriving: bool = False) -> Opening:
        """Show the study (asking for `series_uid` when given) as soon as something of it is local;
        `arriving`: a retrieval is bringing it, so wait for its first image instead of failing."""
        opening = Opening(study_uid, series_uid, arriving, on_opened, on_failed)
        self._openings = [o for o in self._openings if o.state in ("waiting", "reading")]
        self._openings.append(opening)
        self._read(opening)
        return opening

    # --- what the window hears from the network and the cache ---------------------------------

    def instances_added(self, study_uid: str, series_uid: str) -> None:
        """Images of a series reached the cache (coalesced announcements)."""
        for opening in list(self._openings):
            if opening.state == "waiting" and opening.study_uid == study_uid:
                self._read(opening)
        feed = self._feeds.get(study_uid)
        if feed is not None and feed.watched:
            feed.refresh()

    def arrival_ended(self, study_uid: str, reason: str = "") -> None:
        """The retrieval bringing a study ended: open what is local, or say why nothing is."""
        for opening in list(self._openings):
            if opening.study_uid == study_uid and opening.state in ("waiting", "reading"):
                opening.arriving = False
                opening.ended_reason = reason
                if opening.state == "waiting":
                    self._read(opening)
                else:
                    opening._pending = True   # judged again when the read under way ends

    # --- internals ----------------------------------------------------------------------------

    def _read(self, opening: Opening) -> None:
        if opening.state != "waiting":
            return
        opening.state = "reading"

        def done(sets: StudySets) -> None:
            if opening.state != "reading":
                return
            again, opening._pending = opening._pending, False
            if opening.shows(sets):
                opening.state = "opened"
                self._forget(opening)
                opening.on_opened(sets)
            elif opening.arriving:
                opening.state = "waiting"      # the next arrival reads again
                if again:
                    self._read(opening)
            elif again:
                opening.state = "waiting"
                self._read(opening)
            else:
                reason = opening.ended_reason
                if reason:
                    self._fail(opening, f"Could not open the study: {reason}")
                elif opening.series_uid is not None and sets.frames:
                    self._fail(opening, "This series has no images in the cache.")
                else:
                    self._fail(opening, "This study has no series in the cache.")

        def failed(message: str) -> None:
            if opening.state == "reading":
                if opening.arriving:
                    opening.state = "waiting"
                else:
                    self._fail(opening, message)

        self.feed(opening.study_uid).refresh((done, failed))

    def _fail(self, opening: Opening, message: str) -> None:
        opening.state = "failed"
        self._forget(opening)
        opening.on_failed(message)

    def _forget(self, opening: Opening) -> None:
        if opening in self._openings:
            self._openings.remove(opening)

    def _prune(self, feed: StudyFeed) -> None:
        if feed.idle and self._feeds.get(feed.key) is feed:
            del self._feeds[feed.key]
