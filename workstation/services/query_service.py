"""Questions to remote nodes: C-ECHO, streamed searches, a study's series, where a study is.

Runs core code (`workstation.core.net`) on the network's own `JobRunner`, so a dead node never
starves the local cache's jobs. Settings are read when a job is submitted: the immutable `Node`
and plain values go into the job; no worker reads settings or widgets. `find` streams batches of
records (every 50 records or 100 ms) with, for studies, how many of their instances the local
cache holds ("where it is").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from workstation.core.cache import Cache, QueryFilter
from workstation.core.model import Series
from workstation.core.model.node import Node
from workstation.core.net.echo import echo
from workstation.core.net.find import FindOutcome, find
from workstation.core.settings import Settings
from workstation.services.jobs import Job, JobRunner

BATCH_RECORDS = 50
BATCH_SECONDS = 0.1


def where_it_is(remote_instances: int, local_instances: int) -> str:
    """'remote', 'both', or 'both (n/m local)' while only part of a remote study is local."""
    if local_instances <= 0:
        return "remote"
    if remote_instances and local_instances < remote_instances:
        return f"both ({local_instances}/{remote_instances} local)"
    return "both"


@dataclass(frozen=True)
class NodeQuery(QueryFilter):
    """A C-FIND filter with the referring physician, which the cache's filter does not carry."""

    ReferringPhysicianName: str = ""


@dataclass(frozen=True)
class FoundBatch:
    """Records of one streamed search batch; `local` maps StudyInstanceUID -> instances in the cache."""

    records: tuple
    local: dict = field(default_factory=dict)


def local_counts(cache: Cache, study_uids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in range(0, len(study_uids), 200):
        chunk = study_uids[i:i + 200]
        for study in cache.studies(QueryFilter(StudyInstanceUID="\\".join(chunk))):
            counts[study.StudyInstanceUID] = study.NumberOfStudyRelatedInstances
    return counts


class QueryService:
    def __init__(self, runner: JobRunner, cache: Cache, settings: Callable[[], Settings]) -> None:
        self.runner = runner
        self.cache = cache
        self._settings = settings

    def echo(self, node: Node) -> Job:
        own = self._settings().ae_title
        return self.runner.submit(f"C-ECHO to {node.name}", lambda progress, cancel: echo(node, own))

    def find(self, node: Node, level: str, query: QueryFilter, limit: int | None = None,
             referring: str = "") -> Job:
        """Stream `FoundBatch`es as `job.partial`; the job succeeds with the `FindOutcome`."""
        if referring:
            query = NodeQuery(**{f.name: getattr(query, f.name) for f in fields(query)},
                              ReferringPhysicianName=referring)
        settings = self._settings()
        own = settings.ae_title
        limit = limit or settings.find_limit
        cache = self.cache

        def work(progress, cancel, publish) -> FindOutcome:
            outcome = FindOutcome()
            batch: list = []
            last = time.monotonic()

            def flush() -> None:
                local = local_counts(cache, [r.StudyInstanceUID for r in batch]) if level == "study" else {}
                publish(FoundBatch(tuple(batch), local))
                batch.clear()

            for record in find(node, own, level, query, limit=limit, cancel=cancel, outcome=outcome):
                batch.append(record)
                now = time.monotonic()
                if len(batch) >= BATCH_RECORDS or now - last >= BATCH_SECONDS:
                    flush()
                    last = now
            if batch:
                flush()
            return outcome

        return self.runner.submit(f"Search on {node.name}", work, streaming=True)

    def locality(self, study_uids: list[str]) -> Job:
        """{StudyInstanceUID: instances in the cache} for these studies."""
        uids = list(study_uids)
        return self.runner.submit("where it is", lambda progress, cancel: local_counts(self.cache, uids))

    def series(self, node: Node, study_uid: str) -> Job:
        """[(Series from the node, instances of it in the cache)]."""
        own = self._settings().ae_title
        cache = self.cache

        def work(progress, cancel) -> list[tuple[Series, int]]:
            remote = list(find(node, own, "series", QueryFilter(StudyInstanceUID=study_uid), cancel=cancel))
            local = {s.SeriesInstanceUID: s.NumberOfSeriesRelatedInstances for s in cache.series(study_uid)}
            return [(s, local.get(s.SeriesInstanceUID, 0)) for s in remote]

        return self.runner.submit(f"List series on {node.name}", work)

    def patient_studies(self, node: Node, patient_id: str, limit: int = 200) -> Job:
        """The studies of one patient on a node (its priors, for the viewer), newest first."""
        own = self._settings().ae_title

        def work(progress, cancel):
            found = list(find(node, own, "study", QueryFilter(PatientID=patient_id), limit=limit, cancel=cancel))
            return sorted(found, key=lambda s: (s.StudyDate, s.StudyTime), reverse=True)

        return self.runner.submit(f"Priors on {node.name}", work)
