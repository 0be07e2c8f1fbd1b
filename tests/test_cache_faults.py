"""The cache under faults, through the real command line: a damaged index, a full disk, two writers at once.

A full disk is made without privileges by a file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so
writes fail with EFBIG) on the CLI process; as root, a small tmpfs gives the real ENOSPC as well.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.peers import c_echo, dcmtk, free_port, peer_env, wait_until

GE = "dcm_qa_ct/In/GE"  # 28 CT slices of 526 KB, one study
COVID = "tcia_covid19_ny_sbu"  # 6 studies, files up to 763 KB, and a README that is refused


def ws(*args: str, home: Path, check_code: int | None = 0, limit: int | None = None,
       timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI; `limit` caps the size of any file it writes (its disk is "full" beyond that)."""

    def limit_writes() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "workstation", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit_writes if limit else None)
    if check_code is not None:
        assert proc.returncode == check_code, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def listed(home: Path, level: str = "study") -> list[dict]:
    return json.loads(ws("list", "--level", level, "--json", home=home).stdout)


def assert_whole(home: Path) -> None:
    """Every row has its file and every file its row, sizes agree, and no temporary file is left."""
    files = home / "cache" / "files"
    on_disk = {p for p in files.rglob("*") if p.is_file()}
    assert not [p for p in on_disk if p.name.startswith(".")], "no temporary file is left"
    rows = {Path(i["path"]): i for i in listed(home, "instance")}
    assert set(rows) == on_disk, "no orphan file and no row without its file"
    assert all(p.stat().st_size == r["size_bytes"] for p, r in rows.items())
    assert json.loads(ws("verify", "--json", home=home).stdout)["ok"] is True


def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


# A damaged index


def _pinned_and_touched(home: Path, samples: Path) -> tuple[str, str, float]:
    ws("import", str(samples / GE), str(samples / COVID), home=home, check_code=1)
    studies = listed(home)
    assert len(studies) == 7 and sum(s["NumberOfStudyRelatedInstances"] for s in studies) == 46
    pinned, touched = studies[0]["StudyInstanceUID"], studies[1]["StudyInstanceUID"]
    ws("pin", pinned, home=home)
    from workstation.core.cache import Cache  # the window's "open series" is what touches a study

    with Cache(home) as cache:
        cache.touch(touched)
        last_access = cache.studies()[1].last_access
    return pinned, touched, last_access


def _assert_rebuilt(home: Path, pinned: str, touched: str, last_access: float) -> None:
    doc = json.loads(ws("verify", "--repair", "--json", home=home).stdout)
    assert doc["ok"] is True and doc["rebuilt"] is True and doc["repaired"] >= 46
    studies = {s["StudyInstanceUID"]: s for s in listed(home)}
    assert len(studies) == 7 and sum(s["NumberOfStudyRelatedInstances"] for s in studies.values()) == 46
    assert [uid for uid, s in studies.items() if s["pinned"]] == [pinned], "the pin survived the rebuild"
    assert studies[touched]["last_access"] == pytest.approx(last_access), "so did the access time"
    assert (home / "cache" / "index.damaged.sqlite").exists(), "the damaged index is kept for a look"
    assert_whole(home)


def test_a_truncated_index_is_said_in_one_line_and_rebuilt_with_its_pins(tmp_path, samples):
    home = tmp_path / "home"
    pinned, touched, last_access = _pinned_and_touched(home, samples)
    os.truncate(home / "cache" / "index.sqlite", 8192)
    for verb in (["list"], ["delete", pinned], ["import", str(samples / GE)]):
        line = one_error_line(ws(*verb, home=home, check_code=2).stderr)
        assert "index is damaged" in line and "verify --repair" in line
    doc = json.loads(ws("verify", "--json", home=home, check_code=1).stdout)
    assert doc["ok"] is False and doc["index_damaged"] and doc["rebuilt"] is False
    _assert_rebuilt(home, pinned, touched, last_access)


def test_a_damaged_page_stops_listen_in_one_line_and_a_rebuild_lets_it_store_again(tmp_path, samples):
    home = tmp_path / "home"
    pinned, touched, last_access = _pinned_and_touched(home, samples)
    index = home / "cache" / "index.sqlite"
    pages = index.stat().st_size // 4096
    with open(index, "r+b") as f:  # a page in the middle overwritten, as a bad sector or a stray write would
        f.seek(4096 * (pages // 2))
        f.write(os.urandom(4096))
    port = free_port()
    refused = ws("listen", "--port", str(port), "--host", "127.0.0.1", home=home, check_code=2, timeout=60)
    assert "index is damaged" in one_error_line(refused.stderr)
    _assert_rebuilt(home, pinned, touched, last_access)
    with _listening(home, port) as out:
        push = subprocess.run([dcmtk("storescu"), "+sd", "+r", "-aec", "WORKSTATION", "127.0.0.1", str(port),
                               str(samples / "dcm_qa_ct/In/Philips")], capture_output=True, text=True, env=peer_env())
        assert push.returncode == 0, push.stderr
    assert out.text.count("received ") == 142
    assert len(listed(home, "instance")) == 46 + 142
    assert_whole(home)


class _Output:
    text = ""


@contextlib.contextmanager
def _listening(home: Path, port: int):
    if not Path(dcmtk("storescu")).exists():
        pytest.fail("storescu (dcmtk) is required")
    proc = subprocess.Popen([sys.executable, "-m", "workstation", "--home", str(home), "listen", "--port", str(port),
                             "--host", "127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = _Output()
    try:
        wait_until(lambda: c_echo("WORKSTATION", port), 20, "workstation listen", proc)
        yield out
    finally:
        proc.send_signal(signal.SIGTERM)
        out.text, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err


# A full disk


def test_import_stops_cleanly_when_the_disk_fills_up_with_files(tmp_path, samples):
    """The CT slices (526 KB) fit, the first COVID file over 600 KB does not: the import stops there."""
    home = tmp_path / "home"
    done = ws("import", str(samples / GE), str(samples / COVID), home=home, check_code=1, limit=600_000)
    line = one_error_line(done.stderr)
    assert "the import stopped: the disk holding the cache is full" in line and "not imported" in line
    imported = int(done.stdout.split("imported ")[1].split(",")[0])
    assert imported >= 28
    assert len(listed(home, "instance")) == imported, "the report tells what was imported"
    assert_whole(home)
    ws("import", str(samples / GE), str(samples / COVID), home=home, check_code=1)  # room again: the rest comes in
    assert len(listed(home, "instance")) == 46
    assert_whole(home)


def test_import_takes_its_files_back_when_the_index_cannot_grow(tmp_path, samples):
    """Small files all fit under the limit, but the index's write-ahead log cannot grow past it."""
    home = tmp_path / "home"
    ws("import", str(samples / "dcm_qa_ts"), home=home, check_code=None)
    before = len(listed(home, "instance"))
    small = tmp_path / "small"
    small.mkdir()
    for i, path in enumerate(sorted(p for p in (samples / "pydicom_testfiles").rglob("*.dcm")
                                    if p.stat().st_size < 48_000)):
        shutil.copy(path, small / f"{i:03}.dcm")
    done = ws("import", str(small), home=home, check_code=1, limit=64 * 1024)
    assert "the import stopped: the cache index could not be written" in one_error_line(done.stderr)
    assert len(listed(home, "instance")) == before
    assert_whole(home)


def test_delete_and_evict_keep_the_study_when_the_index_cannot_record_it(tmp_path, samples):
    home = tmp_path / "home"
    ws("import", str(samples / COVID), home=home, check_code=1)
    studies = listed(home)
    uid = studies[0]["StudyInstanceUID"]
    limit = 36 * 1024  # room for the index's shared-memory file (32 KiB), not for the deletion's log
    assert "could not be written" in one_error_line(ws("delete", uid, home=home, check_code=2, limit=limit).stderr)
    assert "could not be written" in one_error_line(
        ws("evict", "--to-size", "0", home=home, check_code=2, limit=limit).stderr)
    assert listed(home) == studies, "nothing was deleted"
    assert_whole(home)
    ws("delete", uid, home=home)
    assert len(listed(home)) == len(studies) - 1
    assert_whole(home)


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (as root), for the real ENOSPC; skipped where mounting is not allowed."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root; the RLIMIT_FSIZE tests cover the same paths")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_import_onto_a_full_tmpfs_stops_with_a_report_and_no_leftovers(small_disk, samples):
    home = small_disk / "home"
    done = ws("import", str(samples / GE), str(samples / COVID), home=home, check_code=1)
    assert "the disk holding the cache is full" in one_error_line(done.stderr)
    imported = int(done.stdout.split("imported ")[1].split(",")[0])
    # How many fit before the first refusal depends on which staged copies of the files ahead took
    # the space first (they are staged in parallel); what matters is that the report tells the truth.
    assert 0 <= imported < 28
    assert len(listed(home, "instance")) == imported
    assert_whole(home)


# Two writers on one cache


def test_two_imports_of_the_same_folder_at_once(tmp_path, samples):
    home = tmp_path / "home"
    ws("list", home=home)  # the cache exists before the race starts
    folders = [str(samples / "dcm_qa_ct"), str(samples / COVID)]
    for _ in range(3):
        procs = [subprocess.Popen([sys.executable, "-m", "workstation", "--home", str(home), "import", "--json",
                                   *folders], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        docs = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 1 and "Traceback" not in err and "error:" not in err, err
            docs.append(json.loads(out))
        assert all(not [r for r in d["rejected"] if "stored" in r["reason"]] for d in docs), docs
        instances = listed(home, "instance")
        assert len(instances) == len({i["SOPInstanceUID"] for i in instances}) == 170 + 18
        assert_whole(home)


@pytest.mark.parametrize("attempt", range(3))
def test_import_while_listen_receives_the_same_instances(tmp_path, samples, attempt):
    """Both writers store the same new instances at the same moment: each instance is stored once, and
    the push is answered Success for every one (the import and listen wait for each other's commits)."""
    home = tmp_path / "home"
    port = free_port()
    folder = samples / "dcm_qa_ct/In"
    with _listening(home, port) as out:
        pushes = [subprocess.Popen([dcmtk("storescu"), "-v", "+sd", "+r", "-aec", "WORKSTATION", "127.0.0.1", str(port),
                                    str(sub)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=peer_env())
                  for sub in (folder / "GE", folder / "Philips")]
        importing = subprocess.Popen([sys.executable, "-m", "workstation", "--home", str(home), "import", "--json",
                                      str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        imported, err = importing.communicate(timeout=300)
        answers = "".join(p.communicate(timeout=300)[0] for p in pushes)
    assert importing.returncode == 0 and "Traceback" not in err, err
    assert json.loads(imported)["rejected"] == []
    # DCMTK builds word the answer "(Success)" or "(Status: 0x0000 - Success)"
    assert len(re.findall(r"Received Store Response \((?:Status: 0x0000 - )?Success\)", answers)) == 170, answers[-2000:]
    assert out.text.count("received ") == 170
    instances = listed(home, "instance")
    assert len(instances) == len({i["SOPInstanceUID"] for i in instances}) == 170
    assert_whole(home)


HOLDER = textwrap.dedent(
    """
    import sys, time, warnings
    warnings.simplefilter("ignore")
    from pathlib import Path
    from workstation.core.cache import Cache
    from workstation.core.cache.files import temp_name

    home, folder = Path(sys.argv[1]), sys.argv[2]
    # a temporary file of this (running) process, as a staging worker leaves while it copies
    staging = temp_name(home / "cache" / "files" / "ab" / "in-flight.dcm")
    staging.parent.mkdir(parents=True, exist_ok=True)
    staging.write_bytes(b"half a file")

    def progress(done, total, message):
        if done == 5:  # five files placed, their rows written but not committed yet
            print("holding", flush=True)
            time.sleep(3)

    Cache(home).import_paths([folder], progress=progress)
    print(staging, flush=True)
    sys.stdin.read()
    """
)


def test_verify_repair_leaves_another_process_in_flight_work_alone(tmp_path, samples):
    home = tmp_path / "home"
    ws("list", home=home)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home), str(samples / GE)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        doc = json.loads(ws("verify", "--repair", "--json", home=home).stdout)
        staging = Path(holder.stdout.readline().strip())
        assert doc["ok"] is True and doc["repaired"] == 0, "it waited for the import's rows instead of re-indexing"
        assert staging.exists(), "a running process's temporary file is not a leftover"
        assert len(listed(home, "instance")) == 28
        with sqlite3.connect(home / "cache" / "index.sqlite") as conn:
            assert conn.execute("SELECT count(*) FROM instances").fetchone()[0] == 28
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert holder.returncode == 0, holder.stderr.read()
    doc = json.loads(ws("verify", "--repair", "--json", home=home).stdout)
    assert doc["repaired"] == 1 and not staging.exists()
    assert_whole(home)


# Annotations (kept in the state file)


def _annotation(uid: str, study: str, series: str, sop: str, **extra) -> dict:
    return {"uid": uid, "StudyInstanceUID": study, "SeriesInstanceUID": series, "SOPInstanceUID": sop, "frame": 1,
            "kind": "length", "points": [[1.5, 2.5], [30.25, 40.0]], **extra}


def _annotate(home: Path, study: dict, n: int) -> list[dict]:
    from workstation.core.cache import Cache

    instance = next(i for i in listed(home, "instance") if i["StudyInstanceUID"] == study["StudyInstanceUID"])
    documents = [_annotation(f"{study['StudyInstanceUID']}.a{i}", study["StudyInstanceUID"], instance["SeriesInstanceUID"],
                             instance["SOPInstanceUID"], label=f"Messung {i}") for i in range(n)]
    with Cache(home) as cache:
        cache.save_annotations(study["StudyInstanceUID"], documents)
    return documents


def _annotations(home: Path) -> dict[str, list[dict]]:
    from workstation.core.cache import Cache

    with Cache(home) as cache:
        return {uid: cache.annotations(uid) for uid in cache.annotated_studies()}


def test_annotations_survive_the_rebuild_of_a_damaged_index(tmp_path, samples):
    home = tmp_path / "home"
    pinned, touched, last_access = _pinned_and_touched(home, samples)
    studies = listed(home)
    saved = {s["StudyInstanceUID"]: _annotate(home, s, n) for s, n in zip(studies[:3], (1, 2, 5), strict=True)}
    os.truncate(home / "cache" / "index.sqlite", 8192)
    _assert_rebuilt(home, pinned, touched, last_access)
    assert _annotations(home) == saved


def test_evict_keeps_annotations_and_delete_removes_them_through_the_command_line(tmp_path, samples):
    home = tmp_path / "home"
    ws("import", str(samples / COVID), home=home, check_code=1)
    studies = listed(home)
    saved = {s["StudyInstanceUID"]: _annotate(home, s, 2) for s in studies[:2]}
    ws("evict", "--to-size", "0", home=home)
    assert listed(home) == [] and _annotations(home) == saved
    first, second = saved
    ws("import", str(samples / COVID), home=home, check_code=1)  # back from the PACS, with its annotations
    ws("delete", first, home=home)
    ws("delete", first, home=home, check_code=2)
    ws("evict", "--to-size", "0", home=home)
    ws("delete", second, home=home)  # evicted, but it still had annotations to delete
    assert _annotations(home) == {}
    assert "no study 1.2.3 in the cache" in one_error_line(ws("delete", "1.2.3", home=home, check_code=2).stderr)


ANNOTATING_WINDOW = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from workstation.core.cache import Cache

    home, study, series, sop, stop = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5])
    with Cache(home) as cache:
        i = 0
        while i < 20 or not stop.exists():  # the viewer saves its whole set after each new measurement
            documents = cache.annotations(study)
            documents.append({"uid": f"{study}.m{i}", "StudyInstanceUID": study, "SeriesInstanceUID": series,
                              "SOPInstanceUID": sop, "frame": None, "kind": "length", "mm": i / 4})
            cache.save_annotations(study, documents)
            cache.touch(study)
            i += 1
            if i == 1:
                print("saving", flush=True)
    print(i, flush=True)
    """
)


def test_the_window_saving_annotations_and_the_command_line_changing_key_images_at_once(tmp_path, samples):
    """Two windows keep saving annotations of two studies while `workstation keys` adds key images to one of
    them and `pin` pins it: every write of each is there afterwards."""
    home = tmp_path / "home"
    ws("import", str(samples / "dcm_qa_enh/In/Siemens/XA10"), str(samples / GE), home=home)
    instances = listed(home, "instance")
    studies = sorted({i["StudyInstanceUID"] for i in instances})
    first = {s: next(i for i in instances if i["StudyInstanceUID"] == s) for s in studies}
    stop = tmp_path / "stop"
    windows = [subprocess.Popen([sys.executable, "-c", ANNOTATING_WINDOW, str(home), s, first[s]["SeriesInstanceUID"],
                                 first[s]["SOPInstanceUID"], str(stop)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for s in studies]
    try:
        for window in windows:
            assert window.stdout.readline().strip() == "saving", window.stderr.read()
        target = studies[0]
        sops = [i["SOPInstanceUID"] for i in instances if i["StudyInstanceUID"] == target][:3]
        for sop in sops:
            ws("keys", target, "--add", sop, home=home)
        ws("pin", target, home=home)
        for window in windows:
            assert window.poll() is None, f"a window stopped saving before the end: {window.stderr.read()}"
        stop.touch()
        rounds = []
        for window in windows:
            out, err = window.communicate(timeout=120)
            assert window.returncode == 0, err
            rounds.append(int(out))
    finally:
        for window in windows:
            if window.poll() is None:
                window.kill()
    saved = _annotations(home)
    for s, n in zip(studies, rounds, strict=True):
        assert [d["uid"] for d in saved[s]] == [f"{s}.m{i}" for i in range(n)], "no save lost another's"
    doc = json.loads(ws("keys", target, "--json", home=home).stdout)
    assert [k["SOPInstanceUID"] for k in doc["keys"]] == sops and len(doc["documents"]) == 1
    assert [s["pinned"] for s in listed(home) if s["StudyInstanceUID"] == target] == [True]
    assert_whole(home)
