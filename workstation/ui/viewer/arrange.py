"""How a viewer tab lays its studies out: the hanging protocols' choice (core/model/hanging.py) put
on the session, with each cell's options (window preset, cine), and the arrangement on screen saved
as a new protocol."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from workstation.core.model import hanging
from workstation.core.pixels.presets import load_presets

log = logging.getLogger(__name__)


def inputs(session, others=()) -> tuple[hanging.StudyInput, list[hanging.StudyInput]]:
    """The current study and the priors as the protocols see them: open ones with their display sets,
    listed ones (in the cache or only on the PACS) as records."""
    current = hanging.StudyInput.of(session.current)
    open_uids = {s.StudyInstanceUID for s in session.studies}
    priors = [hanging.StudyInput.of(s) for s in session.studies[1:]]
    priors += [hanging.StudyInput(s) for s in others if s.StudyInstanceUID not in open_uids]
    return current, priors


def choose(session, home: Path | None, others=()) -> hanging.Arrangement:
    current, priors = inputs(session, others)
    return hanging.choose(hanging.load_protocols(home), current, priors)


def apply(session, arrangement: hanging.Arrangement) -> None:
    """Lay the session out as the arrangement says, with its cells' windows and cine."""
    cells = [tuple(c) if c is not None else None for c in arrangement.cells]
    session.arrange(arrangement.rows, arrangement.columns, cells, arrangement.protocol)
    presets = {name.casefold(): w for name, w in load_presets().items()}
    for viewport, options in zip(session.layout.viewports, arrangement.options, strict=False):
        window = options.get("window") if options else None
        if window and viewport.display_set is not None:
            preset = presets.get(str(window).casefold())
            if preset is not None:
                viewport.set_window(preset)
            else:
                log.warning("hanging protocol %s asks for an unknown window preset %r", arrangement.protocol, window)
        if options and options.get("cine") == "play" and viewport.display_set is not None and len(viewport.frames) > 1:
            viewport.play(time.monotonic())


def save_arrangement(session, name: str, home: Path | None) -> str:
    """Save what is on screen as a protocol in HOME/hanging_protocols; the outcome in words."""
    if home is None:
        return "There is no home folder to save hanging protocols in."
    current, priors = inputs(session)
    layout = session.layout
    cells = [(v.display_set.StudyInstanceUID, v.display_set.key) if v.display_set is not None else None
             for v in layout.viewports]
    options = [({"window": v.window.explanation} if v.window is not None and v.window.explanation in load_presets()
                else {}) for v in layout.viewports]
    try:
        protocol = hanging.protocol_from_arrangement(name, current, priors, layout.rows, layout.columns, cells,
                                                     options)
        path = hanging.save_protocol(home, protocol)
    except (ValueError, OSError) as exc:
        return f"The hanging protocol was not saved: {exc}"
    return f"Saved the hanging protocol {protocol.name!r} ({path.name}): studies like this one open this way."
