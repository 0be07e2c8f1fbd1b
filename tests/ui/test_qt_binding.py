"""The Qt binding keeps Python's reference counts right.

PySide6 6.12.0 on Python 3.11 returned None from every void method and True from every
`emit()` without taking a reference, so each click, setText or emit stole one; after some
thousands the interpreter freed None or True and died (segfaults mid-run, "bool_dealloc" at
exit). pyproject.toml keeps that release out; this test fails first if a binding like it returns.
"""

from __future__ import annotations

import gc
import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel, QPushButton

CALLS = 500


class _Emitter(QObject):
    plain = Signal()
    text = Signal(str)


def _drift(call) -> tuple[int, int, int]:
    gc.collect()
    before = [sys.getrefcount(x) for x in (None, True, False)]
    for _ in range(CALLS):
        call()
    gc.collect()
    after = [sys.getrefcount(x) for x in (None, True, False)]
    return tuple(b - a for a, b in zip(before, after, strict=True))


def test_void_methods_and_emits_keep_the_counts_of_none_true_and_false(qtbot):
    button, label, emitter = QPushButton(), QLabel(), _Emitter()
    qtbot.addWidget(button)
    qtbot.addWidget(label)
    received = []
    emitter.text.connect(received.append)
    emitter.plain.connect(lambda: received.append("plain"))
    calls = {
        "QPushButton.click": button.click,
        "QWidget.setEnabled": lambda: button.setEnabled(True),
        "QLabel.setText": lambda: label.setText("x"),
        "Signal().emit": emitter.plain.emit,
        "Signal(str).emit": lambda: emitter.text.emit("x"),
    }
    for name, call in calls.items():
        drift = _drift(call)
        assert all(abs(d) < CALLS // 10 for d in drift), (
            f"{name} changed the counts of (None, True, False) by {drift} over {CALLS} calls: this Qt binding "
            "loses references and will crash the application; pin another PySide6 release in pyproject.toml")
    assert len(received) == 2 * CALLS
