"""How much a busy machine slows supernet training, by thread count: is it our threads fighting the load?

Issue #26 saw the 15-epoch tiny training take 1,555 s at load 7 on 2 cores against 90 s quiet (17x), where sharing
2 cores with ~7 other runnable processes should cost ~3-4x. The suspect is OpenMP: every op of a tiny net is a
parallel region whose threads meet at a barrier, and when the OS deschedules one of them the others wait for a
whole time slice. This benchmark trains the same tiny run (space tiny, builtin:digits, ``--epochs`` epochs of
``--images`` images) in a fresh process for each cell:

- quiet, and beside ``--busy`` processes that spin on the CPU (a stand-in for a neighbour's job);
- with the threads nas picks (``auto``: what ``nas supernet train`` does by default), and forced through
  ``OMP_NUM_THREADS`` and ``OMP_WAIT_POLICY``: 1 thread, all cores spinning while idle (OpenMP's default), all
  cores sleeping while idle (``PASSIVE``).

The figure is the last epoch's training images/s as the trainer logs it (steps only: start-up, evaluation and the
checkpoint are outside the clock) and the slowdown loaded/quiet per thread setting. Rounds alternate the cells, so
a drift of the machine spreads over all of them.

    python benchmarks/train_under_load.py [--busy 6] [--rounds 2] [--out bench_out/train_under_load.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.fileio import write_json_atomic  # noqa: E402


def train(threads: str, epochs: int, images: int, out: Path) -> float:
    """Images/s of the last epoch of one training in a fresh process (``auto``: nas picks the threads and their
    wait policy; ``N``: N threads that spin while idle, OpenMP's default; ``N passive``: N threads that sleep)."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        env.pop(name, None)
    if threads != "auto":
        env["OMP_NUM_THREADS"] = threads.split()[0]
        env["OMP_WAIT_POLICY"] = "PASSIVE" if threads.endswith("passive") else "ACTIVE"
    cmd = [sys.executable, "-m", "nas", "supernet", "train", "--space", "tiny", "--data", "builtin:digits",
           "--epochs", str(epochs), "--max-train-images", str(images), "--val-images", "64", "--bn-images", "32",
           "--out", str(out), "--no-progress", "--json"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return float(json.loads(proc.stdout)["history"][-1]["images_per_s"])


def spinners(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--busy", type=int, default=6, help="processes spinning beside the training (default 6)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--images", type=int, default=640, help="training images per epoch")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="bench_out/train_under_load.json")
    args = p.parse_args()

    cores = str(os.cpu_count() or 1)
    settings = ["auto", "1", cores, f"{cores} passive"]
    speeds: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for load in ("quiet", "loaded"):
                busy = spinners(args.busy) if load == "loaded" else []
                try:
                    for threads in settings:
                        out = Path(tmp) / f"{load}-{threads}-{r}.pt"
                        speeds.setdefault((load, threads), []).append(train(threads, args.epochs, args.images, out))
                        print(f"round {r + 1}: {load:6s} threads={threads:10s} "
                              f"{speeds[(load, threads)][-1]:7.1f} images/s", flush=True)
                finally:
                    for proc in busy:
                        proc.kill()
                        proc.wait()
    rows: list[dict[str, Any]] = []
    print(f"\n{'threads':10s} {'quiet img/s':>12s} {'loaded img/s':>13s} {'slowdown':>9s}")
    for threads in settings:
        quiet = statistics.median(speeds[("quiet", threads)])
        loaded = statistics.median(speeds[("loaded", threads)])
        rows.append({"threads": threads, "quiet_images_per_s": quiet, "loaded_images_per_s": loaded,
                     "slowdown": quiet / loaded, "quiet_runs": speeds[("quiet", threads)],
                     "loaded_runs": speeds[("loaded", threads)]})
        print(f"{threads:10s} {quiet:12.1f} {loaded:13.1f} {quiet / loaded:8.2f}x")
    write_json_atomic(args.out, {"busy_processes": args.busy, "cores": os.cpu_count(), "epochs": args.epochs,
                                 "images_per_epoch": args.images, "rounds": args.rounds, "rows": rows})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
