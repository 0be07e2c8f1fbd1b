"""How a viewer tab lays its studies out when they open: the hanging protocols' choice, and saving
the arrangement on screen as a new protocol."""

from __future__ import annotations


def _main_sets(sets) -> list:
    shown = [d for d in sets.display_sets if not d.is_localizer] or list(sets.display_sets)
    return sorted(shown, key=lambda d: (-len(d), d.series.SeriesNumber if d.series.SeriesNumber is not None else 1 << 30))


def arrangement_for(session, protocols=None) -> tuple[int, int, list, str]:
    """(rows, columns, cells, protocol name) for the session's studies; cells hold (study uid, key)."""
    current = session.current
    if current is None:
        return 1, 1, [None], ""
    if len(session.studies) > 1:
        prior = session.studies[1]
        cells = [(current.StudyInstanceUID, d.key) for d in _main_sets(current)[:1]]
        cells += [(prior.StudyInstanceUID, d.key) for d in _main_sets(prior)[:1]]
        return 1, 2, cells + [None] * (2 - len(cells)), "default with prior"
    main = _main_sets(current)[:4]
    rows, columns = {0: (1, 1), 1: (1, 1), 2: (1, 2)}.get(len(main), (2, 2))
    cells = [(current.StudyInstanceUID, d.key) for d in main]
    return rows, columns, cells + [None] * (rows * columns - len(cells)), "default"


def save_arrangement(session, name: str, protocols=None) -> str:
    return "Saving hanging protocols is not available yet."
