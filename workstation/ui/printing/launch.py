"""Opening the print windows from the main window: Tools ▸ Printers, and the film composer (one per
window) fed by a viewer tab."""

from __future__ import annotations


def edit_printers(window):
    from workstation.ui.printing.printers_dialog import PrintersDialog

    dialog = PrintersDialog(window.network, window)
    dialog.setModal(True)
    dialog.finished.connect(lambda _: window.composer is not None and window.composer.refresh_printers())
    dialog.show()
    return dialog


def open_composer(window, viewer=None):
    """The window's film composer, its images from `viewer`; opened from a viewer with nothing in it
    yet, it starts with that viewer's current image."""
    if window.network is None:
        return None
    from workstation.ui.printing.composer import PrintComposer
    from workstation.ui.viewer.print_source import ViewerPrintSource

    if window.composer is None:
        network = window.network
        window.composer = PrintComposer(lambda: network.settings, network, network.runner, parent=window)
        window.composer.status_changed.connect(window.show_status)
    composer = window.composer
    composer.set_source(ViewerPrintSource(viewer) if viewer is not None else None)
    if viewer is not None and not composer.model.items:
        composer.add_from("current")
    composer.show()
    composer.raise_()
    return composer
