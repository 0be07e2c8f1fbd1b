"""kill -9 in the middle of an import: reopening finds a consistent index and verify repairs the leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workstation.core.cache import Cache
from workstation.core.cache.sources import collect

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time, warnings
    warnings.simplefilter("ignore")
    from pathlib import Path
    import workstation.core.cache.ingest as ingest
    from workstation.core.cache import Cache

    home, batch, kill_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ingest.BATCH_FILES = ingest.CHUNK_FILES = batch
    folders = sys.argv[4:]

    def progress(done, total, message):
        if done == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if kill_at < 0 and done:
            time.sleep(0.005)  # placing files takes long enough for the parent to kill us meanwhile

    Cache(Path(home)).import_paths(folders, progress=progress)
    """
)


def _child(home: Path, batch: int, kill_at: int, folders: list[Path]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home), str(batch), str(kill_at), *map(str, folders)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _dcm_files(home: Path) -> set[str]:
    root = home / "cache" / "files"
    if not root.exists():
        return set()
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _assert_consistent(cache: Cache, home: Path) -> None:
    rows = {Path(i.path).relative_to(home / "cache" / "files").as_posix() for i in cache.query("instance")}
    files = _dcm_files(home)
    assert rows == files, "every row has a file and every file has a row"
    assert all(not Path(f).name.startswith(".") for f in files), "no temporary file is left"
    for study in cache.studies():
        n = sum(s.NumberOfSeriesRelatedInstances for s in cache.series(study.StudyInstanceUID))
        assert n == study.NumberOfStudyRelatedInstances
        size = sum(i.size_bytes for s in cache.series(study.StudyInstanceUID) for i in cache.instances(s.SeriesInstanceUID))
        assert size == study.size_bytes


def test_kill_9_from_outside_while_importing(samples, tmp_path):
    """The child commits nothing before it dies (huge batch), so every file that landed is an orphan."""
    home = tmp_path / "home"
    folders = [samples / "dcm_qa_ct", samples / "dcm_qa_deident"]
    proc = _child(home, batch=10**6, kill_at=-1, folders=folders)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(not Path(f).name.startswith(".") for f in _dcm_files(home)) >= 40:
                break
            time.sleep(0.002)
        assert proc.poll() is None, "the import finished before it could be killed; use a bigger folder"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    with Cache(home) as cache:
        landed = {f for f in _dcm_files(home) if not Path(f).name.startswith(".")}
        assert len(landed) >= 40
        assert cache.query("instance") == [], "no row was committed before the kill"
        first = cache.verify()
        assert not first.ok and first.orphan_files >= len(landed) and first.missing_files == 0
        repaired = cache.verify(repair=True)
        assert repaired.ok and repaired.repaired >= len(landed)
        assert cache.verify().to_json() == {"ok": True, "orphan_files": 0, "missing_files": 0, "repaired": 0}
        _assert_consistent(cache, home)
        assert len(cache.query("instance")) == len(landed), "every whole file that landed was re-indexed"
        report = cache.import_paths(folders)
        assert report.duplicates == len(landed)
        assert report.imported == 170 + 196 - len(landed)
        _assert_consistent(cache, home)


@pytest.mark.parametrize("kill_at", [1, 57, 250])
def test_kill_9_between_batches(samples, tmp_path, kill_at):
    """SIGKILL at a chosen file with 25-file batches: committed rows stay, the rest is repaired."""
    home = tmp_path / "home"
    proc = _child(home, batch=25, kill_at=kill_at, folders=[samples / "dcm_qa_ct", samples / "dcm_qa_deident"])
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    folders = [samples / "dcm_qa_ct", samples / "dcm_qa_deident"]
    with Cache(tmp_path / "reference") as reference:
        refused = {r.path for r in reference.import_paths(folders).rejected}
    listed = [e.label for e in collect(folders)[0]]
    # transactions hold 25 listed files each, refused ones included
    before_last_commit = listed[:max(0, (kill_at // 25) * 25 - 25)]
    with Cache(home) as cache:
        committed = len(cache.query("instance"))
        assert committed <= kill_at and committed >= len([f for f in before_last_commit if f not in refused])
        cache.verify(repair=True)
        assert cache.verify().ok
        _assert_consistent(cache, home)
        assert len(cache.query("instance")) >= committed
