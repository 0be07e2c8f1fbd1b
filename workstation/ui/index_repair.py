"""Asking the user before the cache index is rebuilt from its files, and showing the rebuild's progress.

Shown before the main window exists, so both are plain modal dialogs; the rebuild itself runs as a
job on a worker (the dialog only listens to its signals).
"""

from __future__ import annotations

from PySide6.QtCore import QEventLoop, Qt
from PySide6.QtWidgets import QMessageBox, QProgressDialog

from workstation.services.jobs import Job


def confirm_rebuild(reason: str) -> bool:
    """Ask whether to rebuild a damaged index now; Yes is the default."""
    box = QMessageBox(QMessageBox.Icon.Warning, "Cache index damaged",
                      "The index of the local cache is damaged, so the cache cannot be opened.\n\n"
                      "Rebuild it from the cached files now? Every image stays, and pinned studies stay pinned.",
                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    box.setObjectName("index-damaged")
    box.setDetailedText(reason)
    box.setDefaultButton(QMessageBox.StandardButton.Yes)
    return box.exec() == QMessageBox.StandardButton.Yes


def wait_with_progress(job: Job, title: str) -> tuple[object, str]:
    """Show a modal progress dialog until `job` ends; returns (result, '') or (None, why it failed)."""
    dialog = QProgressDialog(title, "", 0, 0)
    dialog.setObjectName("index-rebuild")
    dialog.setWindowTitle(title)
    dialog.setCancelButton(None)  # stopping half-way would leave a half-built index to rebuild again
    dialog.setWindowModality(Qt.WindowModality.ApplicationModal)
    dialog.setMinimumDuration(0)
    outcome: dict = {"result": None, "error": ""}
    loop = QEventLoop()

    def progressed(done: int, total: int, message: str) -> None:
        dialog.setMaximum(max(total, 0))
        dialog.setValue(done)
        dialog.setLabelText(f"{message} ({done} of {total})" if total else message)

    job.progressed.connect(progressed)
    job.succeeded.connect(lambda result: outcome.update(result=result))
    job.failed.connect(lambda message: outcome.update(error=message))
    job.cancelled.connect(lambda: outcome.update(error="the rebuild was cancelled"))
    job.ended.connect(loop.quit)
    dialog.show()
    if job.running:
        loop.exec()
    dialog.close()
    return outcome["result"], outcome["error"]


def tell_failure(message: str) -> None:
    QMessageBox.critical(None, "Cache index", message)
