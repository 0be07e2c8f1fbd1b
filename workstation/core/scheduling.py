"""Which network job runs next: priorities with headroom, Qt-free.

Jobs wait in priority order (first come first served within one priority) and a job of higher
priority overtakes every queued one below it; a running job is never interrupted. Lower
priorities may fill fewer slots than higher ones (`ceilings`), so a background prefetch or a
burst of previews never leaves the study the user just opened waiting for a slot.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum


class Priority(IntEnum):
    OPENED = 0       # the study the user opened: they are waiting to read it
    PREVIEW = 1      # thumbnails of a node's series in the browser
    REQUESTED = 2    # a retrieval or send the user asked for without opening it
    BACKGROUND = 3   # prefetch of priors, print jobs


SLOTS = 4
CEILINGS = {Priority.OPENED: 4, Priority.PREVIEW: 3, Priority.REQUESTED: 2, Priority.BACKGROUND: 1}
GROUP_LIMITS = {"preview": 2}   # each preview opens associations; a PACS limits them per AE title

QUEUED, RUNNING, FINISHED, WITHDRAWN = "queued", "running", "finished", "withdrawn"


@dataclass(eq=False)
class Ticket:
    """One job's place in the queue; `start` is called once, when its turn comes."""

    priority: Priority
    name: str
    start: Callable[[], None] = field(repr=False)
    group: str = ""
    seq: int = 0
    state: str = QUEUED


class Scheduler:
    def __init__(self, slots: int = SLOTS, ceilings: dict | None = None, group_limits: dict | None = None) -> None:
        self.slots = slots
        self.ceilings = dict(CEILINGS if ceilings is None else ceilings)
        self.group_limits = dict(GROUP_LIMITS if group_limits is None else group_limits)
        self._queued: list[Ticket] = []
        self._running: list[Ticket] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def submit(self, priority: Priority, name: str, start: Callable[[], None], group: str = "") -> Ticket:
        ticket = Ticket(Priority(priority), name, start, group, next(self._seq))
        with self._lock:
            self._queued.append(ticket)
        self._dispatch()
        return ticket

    def finished(self, ticket: Ticket) -> None:
        """The ticket's job ended (or will never run): its slot goes to the next in line."""
        with self._lock:
            if ticket in self._running:
                self._running.remove(ticket)
            elif ticket in self._queued:
                self._queued.remove(ticket)
            ticket.state = FINISHED if ticket.state == RUNNING else WITHDRAWN
        self._dispatch()

    def withdraw(self, ticket: Ticket) -> bool:
        """Take a queued ticket out before it starts; False when it already runs or ended."""
        with self._lock:
            if ticket not in self._queued:
                return False
            self._queued.remove(ticket)
            ticket.state = WITHDRAWN
        return True

    def promote(self, ticket: Ticket, priority: Priority) -> None:
        """Raise a queued ticket's priority (e.g. the user opens a study a prefetch is waiting for)."""
        with self._lock:
            if ticket.state == QUEUED and priority < ticket.priority:
                ticket.priority = Priority(priority)
        self._dispatch()

    def queued(self) -> list[Ticket]:
        with self._lock:
            return sorted(self._queued, key=_order)

    def running(self) -> list[Ticket]:
        with self._lock:
            return list(self._running)

    def _dispatch(self) -> None:
        """Start every ticket whose turn it is; the callbacks run outside the lock."""
        while True:
            with self._lock:
                ticket = self._next()
                if ticket is None:
                    return
                self._queued.remove(ticket)
                self._running.append(ticket)
                ticket.state = RUNNING
            ticket.start()

    def _next(self) -> Ticket | None:
        busy = len(self._running)
        groups: dict[str, int] = {}
        for t in self._running:
            groups[t.group] = groups.get(t.group, 0) + 1
        for ticket in sorted(self._queued, key=_order):
            if busy >= min(self.slots, self.ceilings.get(ticket.priority, self.slots)):
                return None   # ceilings fall with priority: nothing further down may start either
            limit = self.group_limits.get(ticket.group)
            if ticket.group and limit is not None and groups.get(ticket.group, 0) >= limit:
                continue      # this kind is at its own limit; the next kind in line may go
            return ticket
        return None


def _order(ticket: Ticket) -> tuple[int, int]:
    return (ticket.priority, ticket.seq)
