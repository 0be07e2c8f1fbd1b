"""F1: the viewer's keyboard and mouse map, from the one map in core/viewer/keymap.py."""

from __future__ import annotations

from html import escape

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from workstation.core.viewer.keymap import BINDINGS, MOUSE


def help_html() -> str:
    parts = ["<h2>Mouse</h2><table cellspacing='4'>"]
    parts += [f"<tr><td><b>{escape(what)}</b></td><td>{escape(does)}</td></tr>" for what, does in MOUSE]
    parts.append("</table>")
    group = None
    for binding in BINDINGS:
        if binding.group != group:
            if group is not None:
                parts.append("</table>")
            group = binding.group
            parts.append(f"<h2>{escape(group)}</h2><table cellspacing='4'>")
        keys = " or ".join(f"<b>{escape(k)}</b>" for k in binding.keys)
        parts.append(f"<tr><td>{keys}</td><td>{escape(binding.text)}</td></tr>")
    parts.append("</table>")
    return "".join(parts)


class HelpDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Viewer: keyboard and mouse")
        self.resize(620, 720)
        self.text = QTextBrowser()
        self.text.setHtml(help_html())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
