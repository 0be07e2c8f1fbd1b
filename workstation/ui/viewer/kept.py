"""What a viewer tab keeps in the cache: its studies' annotations (saved a moment after each change,
and at once when the tab closes) and key images (a Key Object Selection document per change)."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from workstation.services.cache_service import CacheService


class KeptRecords(QObject):
    status_changed = Signal(str)

    def __init__(self, session, cache: CacheService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.cache = cache
        self._key_jobs: dict[str, int] = {}     # StudyInstanceUID -> the newest key-image change asked for
        self._save_timer = QTimer(self, singleShot=True, interval=500)
        self._save_timer.timeout.connect(self._save_annotations)
        session.annotations.changed.connect(lambda study: self._save_timer.start())

    def load(self, study_uid: str) -> None:
        """Read a study's annotations and key images as it joins the tab."""
        self._load_annotations(study_uid)
        self._load_key_images(study_uid)

    def toggle_key_image(self, model) -> None:
        """K: mark or unmark the image; it is kept as a Key Object Selection document in the cache (which
        can be sent to the PACS); if that fails the mark is taken back and the reason said."""
        ref, ds = model.current, model.display_set
        before = dict(self.session.key_images)
        marked = self.session.toggle_key_image(model)
        if marked is None:
            return
        self.status_changed.emit("Marked as a key image." if marked else "No longer a key image.")
        uid = ds.StudyInstanceUID
        self._key_jobs[uid] = generation = self._key_jobs.get(uid, 0) + 1
        job = self.cache.mark_key_image(uid, ref.SOPInstanceUID, ref.frame, marked)

        def done(found) -> None:
            if self._key_jobs.get(uid) == generation:   # a later mark's answer will say more
                self._key_images_read(uid, found)

        def failed(message: str) -> None:
            if self._key_jobs.get(uid) == generation:
                self._load_key_images(uid)              # what the cache holds after all
            else:
                self.session.set_key_images(uid, before.get(uid, frozenset()))
            self.status_changed.emit(f"The key image could not be kept: {message}")

        job.succeeded.connect(done)
        job.failed.connect(failed)

    def _load_key_images(self, study_uid: str) -> None:
        job = self.cache.key_images(study_uid)
        job.succeeded.connect(lambda found, uid=study_uid: self._key_images_read(uid, found))
        job.failed.connect(lambda message: self.status_changed.emit(f"The key images are not shown: {message}"))

    def _key_images_read(self, study_uid: str, found) -> None:
        keys, warnings = found
        self.session.set_key_images(study_uid, keys)
        for text in warnings:
            self.status_changed.emit(text)

    def _load_annotations(self, study_uid: str) -> None:
        job = self.cache.annotations(study_uid)
        job.succeeded.connect(lambda docs, uid=study_uid: self.session.annotations.load(uid, docs))
        job.failed.connect(self.status_changed)

    def _save_annotations(self) -> None:
        store = self.session.annotations
        for study_uid in sorted(store.dirty):
            job = self.cache.save_annotations(study_uid, store.documents(study_uid))
            job.failed.connect(lambda message: self.status_changed.emit(
                f"The annotations could not be saved: {message}. They stay on screen; try again."))
        store.dirty.clear()

    def flush(self) -> None:
        """Save what is still to be saved now (the tab closes)."""
        if self._save_timer.isActive():
            self._save_timer.stop()
            self._save_annotations()
