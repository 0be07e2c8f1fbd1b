"""The series of the selected study: number, modality, description, images, where, a thumbnail.

Series come from the cache or, for a node's study, from a C-FIND beside the cache's counts
(both asked of the services). Thumbnails of series in the cache are rendered by the cache
service; those of series only on the node come from their middle image, fetched into memory by
the network service (the cache is not touched). Both are kept per series, so listing a study
again shows them at once.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem, QWidget

from workstation.core.model import Series, Study
from workstation.core.model.node import Node
from workstation.services.cache_service import CacheService
from workstation.services.jobs import Job
from workstation.services.network_service import NetworkService
from workstation.services.query_service import where_it_is
from workstation.ui.viewer.viewport import qimage_from

THUMB = 64
SERIES_ROLE = Qt.ItemDataRole.UserRole
LOCAL_ROLE = Qt.ItemDataRole.UserRole + 1


class SeriesTableWidget(QTableWidget):
    series_activated = Signal(str, int)   # SeriesInstanceUID, its instances in the cache
    listing_failed = Signal(str)

    def __init__(self, cache: CacheService, network: NetworkService | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(0, 6, parent)
        self.cache = cache
        self.network = network
        self._job: Job | None = None
        self._local_job: Job | None = None
        self._node: Node | None = None
        self._study_uid = ""
        self._thumbs: dict[str, QPixmap] = {}
        self._thumb_jobs: dict[str, Job] = {}
        self._previews: dict[str, Job] = {}   # previews of the listed study, queued or running
        self.setHorizontalHeaderLabels(["", "#", "Modality", "Description", "Images", "Where"])
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setWordWrap(False)
        self.setIconSize(QSize(THUMB, THUMB))
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(THUMB + 6)
        self.horizontalHeader().setStretchLastSection(True)
        self.setColumnWidth(0, THUMB + 10)
        self.setColumnWidth(3, 260)
        self.cellDoubleClicked.connect(self._on_double_clicked)

    def list_series(self, study: Study, node: Node | None) -> None:
        """Ask for the series of `study`, from the cache (node None) or from `node`."""
        if node is None:
            job = self.cache.series(study.StudyInstanceUID)
        else:
            job = self.network.queries.series(node, study.StudyInstanceUID)
        self._job = job
        self._node = node
        self._study_uid = study.StudyInstanceUID
        job.succeeded.connect(self._on_listed)
        job.failed.connect(self._on_failed)

    def clear_series(self) -> None:
        """Empty the list; an answer still on its way for the old study is ignored."""
        self._job = None
        self._local_job = None
        for job in list(self._previews.values()):
            job.cancel()   # a preview still waiting in the network queue leaves it
        self._previews.clear()
        self.setRowCount(0)

    def refresh_local(self) -> None:
        """Instances of the listed study arrived: update the cache's counts (and Where) in place.

        The node's part of the listing does not change while it retrieves; asking the node again on
        every arrival kept superseding the answer before it came while the machine was busy, and
        the Where column then said "remote" until the end.
        """
        if self._node is None or self._job is not None and self.rowCount() == 0:
            return
        if self._local_job is not None and self._local_job.running:
            return
        job = self.cache.series(self._study_uid)
        self._local_job = job
        job.succeeded.connect(self._on_local_counts)

    def _on_local_counts(self, series: list) -> None:
        if self.sender() is not self._local_job:
            return
        local = {s.SeriesInstanceUID: s.NumberOfSeriesRelatedInstances for s in series}
        for row in range(self.rowCount()):
            items = [self.item(row, col) for col in range(self.columnCount())]
            if any(item is None for item in items):
                continue
            uid = items[0].data(SERIES_ROLE)
            count = local.get(uid, 0)
            for item in items:
                item.setData(LOCAL_ROLE, count)
            items[5].setText(where_it_is(int(items[4].text() or 0), count))

    def _on_failed(self, message: str) -> None:
        if self.sender() is self._job:
            self.listing_failed.emit(message)

    def _on_listed(self, listed: list) -> None:
        if self.sender() is not self._job:
            return
        rows: list[tuple[Series, int, str]] = []
        for entry in listed:
            if isinstance(entry, tuple):   # from a node: (Series, instances in the cache)
                series, local = entry
                rows.append((series, local, where_it_is(series.NumberOfSeriesRelatedInstances, local)))
            else:
                rows.append((entry, entry.NumberOfSeriesRelatedInstances, "local"))
        rows.sort(key=lambda r: (r[0].SeriesNumber is None, r[0].SeriesNumber or 0))
        self.setRowCount(len(rows))
        for row, (s, local, where) in enumerate(rows):
            cells = ["", "" if s.SeriesNumber is None else str(s.SeriesNumber), s.Modality, s.SeriesDescription,
                     str(s.NumberOfSeriesRelatedInstances), where]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(SERIES_ROLE, s.SeriesInstanceUID)
                item.setData(LOCAL_ROLE, local)
                self.setItem(row, col, item)
            thumb = self.item(row, 0)
            if s.SeriesInstanceUID in self._thumbs:
                thumb.setIcon(QIcon(self._thumbs[s.SeriesInstanceUID]))
            elif local > 0 or (self._node is not None and self.network is not None):
                thumb.setText("…")
                thumb.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self._request_thumbnail(s.SeriesInstanceUID, remote=local == 0)
            else:
                thumb.setText("—")
                thumb.setTextAlignment(Qt.AlignmentFlag.AlignCenter)

    def _request_thumbnail(self, series_uid: str, remote: bool = False) -> None:
        if series_uid in self._thumb_jobs:
            return
        if remote:   # the network queue runs previews after the opened study, two at a time
            job = self.network.queue.preview(self._node, self._study_uid, series_uid, THUMB)
            self._previews[series_uid] = job
            job.failed.connect(lambda message, uid=series_uid: self._on_thumbnail_failed(uid, message))
        else:
            job = self.cache.thumbnail(series_uid, THUMB)
        self._thumb_jobs[series_uid] = job
        job.succeeded.connect(lambda buffer, uid=series_uid: self._on_thumbnail(uid, buffer))
        job.ended.connect(lambda uid=series_uid, job=job: self._on_thumbnail_ended(uid, job))

    def _on_thumbnail_ended(self, series_uid: str, job: Job) -> None:
        if self._thumb_jobs.get(series_uid) is job:
            del self._thumb_jobs[series_uid]
        if self._previews.get(series_uid) is job:
            del self._previews[series_uid]

    def _thumbnail_items(self, series_uid: str) -> list[QTableWidgetItem]:
        """The thumbnail cells of the rows showing `series_uid`."""
        items = [self.item(row, 0) for row in range(self.rowCount())]
        return [item for item in items if item is not None and item.data(SERIES_ROLE) == series_uid]

    def _on_thumbnail_failed(self, series_uid: str, message: str) -> None:
        """No preview from the node: a dash, and the reason where the user can find it."""
        for item in self._thumbnail_items(series_uid):
            item.setText("—")
            item.setToolTip(f"No preview: {message}")

    def _on_thumbnail(self, series_uid: str, buffer) -> None:
        pixmap = QPixmap.fromImage(qimage_from(buffer)).scaled(
            THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        self._thumbs[series_uid] = pixmap
        for item in self._thumbnail_items(series_uid):
            item.setText("")
            item.setIcon(QIcon(pixmap))

    def selected_series(self) -> tuple[str, int] | None:
        """(SeriesInstanceUID, its instances in the cache) of the selected row, if one is selected."""
        rows = self.selectionModel().selectedRows() if self.selectionModel() is not None else []
        item = self.item(rows[0].row(), 0) if rows else None
        return (item.data(SERIES_ROLE), item.data(LOCAL_ROLE)) if item is not None else None

    def thumbnail_count(self) -> int:
        return sum(1 for row in range(self.rowCount())
                   if self.item(row, 0) is not None and not self.item(row, 0).icon().isNull())

    def _on_double_clicked(self, row: int, column: int) -> None:
        item = self.item(row, 0)
        if item is not None:
            self.series_activated.emit(item.data(SERIES_ROLE), item.data(LOCAL_ROLE))
