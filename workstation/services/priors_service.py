"""A patient's other studies for the viewer: listed from the cache and from the node the study was
opened from, and opened beside the current one (retrieved first when only the node has them).

`find(study)` returns a `PriorsHandle` whose `found(studies)` fires as each source answers (newest
first, the study itself left out) and `failed(message)` says which source could not answer.
`open(prior, beside)` returns an `OpeningHandle` as the study loader's do. The decision whether a
prior is local runs on a worker, like every cache read.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from workstation.core.cache import QueryFilter
from workstation.core.model import Study
from workstation.core.model.node import Node
from workstation.core.scheduling import Priority
from workstation.services.cache_service import CacheService
from workstation.services.study_loader_service import OpeningHandle, StudyLoaderService
from workstation.services.transfer_queue import study_description


class PriorsHandle(QObject):
    found = Signal(object)    # list[Study], all found so far
    failed = Signal(str)


class PriorsService(QObject):
    status_changed = Signal(str)

    def __init__(self, cache: CacheService, loader: StudyLoaderService, network=None) -> None:
        super().__init__()
        self.cache = cache
        self.loader = loader
        self.network = network
        self.origins: dict[str, Node] = {}      # StudyInstanceUID -> the node it was opened from
        self._live: set[QObject] = set()

    def remember_origin(self, study_uid: str, node: Node) -> None:
        self.origins[study_uid] = node

    def find(self, study: Study) -> PriorsHandle:
        handle = PriorsHandle()
        if not study.PatientID:
            return handle
        found: dict[str, Study] = {}
        self._live.add(handle)

        def add(studies) -> None:
            for s in studies:
                if s.StudyInstanceUID != study.StudyInstanceUID:
                    found.setdefault(s.StudyInstanceUID, s)
            handle.found.emit(sorted(found.values(), key=lambda s: (s.StudyDate, s.StudyTime), reverse=True))

        jobs = [self.cache.search(QueryFilter(PatientID=study.PatientID), limit=200)]
        jobs[0].succeeded.connect(add)
        node = self.origins.get(study.StudyInstanceUID)
        if node is not None and self.network is not None:
            remote = self.network.queries.patient_studies(node, study.PatientID)
            remote.succeeded.connect(add)
            remote.failed.connect(lambda message: handle.failed.emit(
                f"The priors on {node.name} are not listed: {message}"))
            jobs.append(remote)
        left = [len(jobs)]

        def ended() -> None:
            left[0] -= 1
            if not left[0]:
                self._live.discard(handle)

        for job in jobs:
            job.ended.connect(ended)
        return handle

    def open(self, prior: Study, beside_study_uid: str) -> OpeningHandle:
        """Open `prior` (retrieving it from the node the other study came from when the cache lacks it)."""
        handle = OpeningHandle()
        self._live.add(handle)
        node = self.origins.get(beside_study_uid)
        uid = prior.StudyInstanceUID
        job = self.cache.search(QueryFilter(StudyInstanceUID=uid), limit=1)

        def decided(local) -> None:
            if local or node is None or self.network is None:
                opening = self.loader.open_study(uid)
            else:
                transfer = self.network.queue.retrieve(node, uid, None, description=study_description(prior),
                                                       priority=Priority.OPENED)
                opening = self.loader.open_study(uid, transfer=transfer)
                self.status_changed.emit(f"Retrieving the prior {study_description(prior)} from {node.name}.")
            handle.request = opening.request
            opening.opened.connect(handle.opened)
            opening.failed.connect(handle.failed)
            opening.opened.connect(lambda _sets: self._live.discard(handle))
            opening.failed.connect(lambda _message: self._live.discard(handle))
            handle._inner = opening   # keep the loader's handle alive as long as ours

        job.succeeded.connect(decided)
        job.failed.connect(handle.failed)
        return handle
