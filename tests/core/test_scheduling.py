"""The network queue's order: the opened study first, then previews, then background work."""

from __future__ import annotations

from workstation.core.scheduling import FINISHED, QUEUED, RUNNING, WITHDRAWN, Priority, Scheduler


def make(slots=2, ceilings=None, group_limits=None):
    started: list[str] = []
    s = Scheduler(slots, ceilings or {p: slots for p in Priority}, group_limits or {})

    def submit(priority, name, group=""):
        return s.submit(priority, name, lambda: started.append(name), group)

    return s, started, submit


def test_a_higher_priority_job_overtakes_queued_lower_ones_but_interrupts_none():
    s, started, submit = make(slots=2)
    b1 = submit(Priority.BACKGROUND, "prior 1")
    submit(Priority.BACKGROUND, "prior 2")
    submit(Priority.BACKGROUND, "prior 3")
    submit(Priority.PREVIEW, "preview")
    opened = submit(Priority.OPENED, "opened")
    assert started == ["prior 1", "prior 2"]            # both slots taken before the user acted
    assert [t.name for t in s.queued()] == ["opened", "preview", "prior 3"]
    s.finished(b1)
    assert started[-1] == "opened" and opened.state == RUNNING and b1.state == FINISHED
    s.finished(opened)
    assert started[-1] == "preview"


def test_lower_priorities_leave_headroom_for_what_the_user_waits_for():
    s, started, submit = make(slots=4, ceilings={Priority.OPENED: 4, Priority.PREVIEW: 3,
                                                 Priority.REQUESTED: 2, Priority.BACKGROUND: 1})
    for i in range(3):
        submit(Priority.BACKGROUND, f"prior {i}")
    assert started == ["prior 0"]                      # background work fills at most one slot
    for i in range(3):
        submit(Priority.REQUESTED, f"retrieve {i}")
    assert started == ["prior 0", "retrieve 0"]
    submit(Priority.OPENED, "opened")
    assert started[-1] == "opened"                     # a free slot was there at once
    assert len(s.running()) == 3


def test_equal_priorities_run_in_the_order_they_came():
    s, started, submit = make(slots=1)
    tickets = [submit(Priority.REQUESTED, str(i)) for i in range(4)]
    for t in tickets:
        s.finished(t)
    assert started == ["0", "1", "2", "3"]


def test_a_group_at_its_limit_lets_the_next_kind_in_line_go():
    s, started, submit = make(slots=4, group_limits={"preview": 2})
    for i in range(4):
        submit(Priority.PREVIEW, f"preview {i}", group="preview")
    submit(Priority.REQUESTED, "retrieve")
    assert started == ["preview 0", "preview 1", "retrieve"]


def test_a_withdrawn_ticket_never_starts_and_a_promoted_one_moves_up():
    s, started, submit = make(slots=1)
    first = submit(Priority.BACKGROUND, "running")
    gone = submit(Priority.BACKGROUND, "cancelled while queued")
    prior = submit(Priority.BACKGROUND, "prior")
    submit(Priority.PREVIEW, "preview")
    assert s.withdraw(gone) and gone.state == WITHDRAWN
    assert not s.withdraw(first)                       # running: it is cancelled, not withdrawn
    s.promote(prior, Priority.OPENED)                  # the user opened the study a prefetch waits for
    assert prior.state == QUEUED
    s.finished(first)
    assert started == ["running", "prior"]
    s.finished(prior)
    assert started == ["running", "prior", "preview"]
