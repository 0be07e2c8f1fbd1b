"""Decoding a compressed CT series: our pipeline (one Python process, 2 worker processes) vs the C++ tools.

The 140-slice Philips CT is encoded once into JPEG Lossless SV1 (DCMTK ``dcmcjpeg +e1``) and
JPEG 2000 lossless (``gdcmconv --j2k``). Then, as whole-process wall time for the whole series:
ours = ``python bench_decode.py --ours DIR`` (imports included) decoding every file to a numpy
array through ImageSource; DCMTK = ``dcmdjpeg`` once per file; GDCM = ``gdcmconv --raw`` once per
file; the C++ tools are timed both one file after another and two at a time (2 cores).
Target: our throughput at least 1.0x theirs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from _util import PHILIPS, ROOT, median, require_samples, table

RUNS = 5


def _decode(path: str) -> int:
    from workstation.core.pixels import ImageSource

    return int(ImageSource.open(path).stored_frame(0).sum())


def ours_worker(folder: str) -> None:
    """Child process: decode the whole series with two worker processes."""
    paths = sorted(str(p) for p in Path(folder).iterdir())
    with ProcessPoolExecutor(max_workers=2) as pool:
        total = sum(pool.map(_decode, paths, chunksize=8))
    print(total)


def encode(sources: list[Path], folder: Path, command: list[str]) -> list[Path]:
    folder.mkdir()

    def one(src: Path) -> Path:
        dst = folder / src.name
        subprocess.run([*command, str(src), str(dst)], check=True, capture_output=True)
        return dst

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(one, sources))


def run_tool(command: list[str], files: list[Path], out: Path, parallel: int) -> float:
    def one(i_src: tuple[int, Path]) -> None:
        i, src = i_src
        subprocess.run([*command, str(src), str(out / f"{i}.dcm")], check=True, capture_output=True)

    start = time.perf_counter()
    if parallel == 1:
        for item in enumerate(files):
            one(item)
    else:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(one, enumerate(files)))
    return time.perf_counter() - start


def run_ours(folder: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--ours", str(folder)], check=True, capture_output=True, cwd=ROOT
    )
    return time.perf_counter() - start


def main() -> None:
    require_samples()
    sources = sorted(PHILIPS.iterdir())
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
        tmp = Path(tmp)
        jpll = encode(sources, tmp / "jpll", ["dcmcjpeg", "+e1"])
        j2k = encode(sources, tmp / "j2k", ["gdcmconv", "--j2k"])
        out = tmp / "out"
        out.mkdir()
        rows = []
        for label, files, folder, tool in (
            ("JPEG Lossless SV1", jpll, tmp / "jpll", ["dcmdjpeg"]),
            ("JPEG 2000 lossless", j2k, tmp / "j2k", ["gdcmconv", "--raw"]),
        ):
            run_ours(folder)
            ours = [run_ours(folder) for _ in range(RUNS)]
            seq = [run_tool(tool, files, out, 1) for _ in range(RUNS)]
            par = [run_tool(tool, files, out, 2) for _ in range(RUNS)]
            mo, ms, mp = median(ours), median(seq), median(par)
            n = len(files)
            rows.append((label, f"ours ({n} files)", f"{mo:.2f} s", f"{n / mo:.0f}/s", ""))
            rows.append(
                ("", f"{tool[0]} x{n}, sequential", f"{ms:.2f} s", f"{n / ms:.0f}/s", f"{ms / mo:.2f}x")
            )
            rows.append(
                ("", f"{tool[0]} x{n}, 2 at a time", f"{mp:.2f} s", f"{n / mp:.0f}/s", f"{mp / mo:.2f}x")
            )
    print(f"whole-series decode, wall time, median of {RUNS} runs")
    print(table(rows, ("series", "decoder", "time", "files/s", "our throughput vs it")))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--ours":
        sys.path.insert(0, str(ROOT))
        ours_worker(sys.argv[2])
    else:
        main()
