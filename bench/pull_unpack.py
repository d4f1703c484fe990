"""Pull + unpack, crishim against containerd 1.6, same images from the same local registry, same run.

    .venv/bin/python -m bench.pull_unpack [--runs 5]

Each run starts from an empty store on both sides (the image is removed, which
collects its content and snapshots) and times ``crictl pull`` end to end. The
report gives medians and the ratio crishim / containerd (lower is better for
crishim), plus each daemon's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.images import push_layered_image, push_seed_image
from tests.support.containerd import Containerd, start_containerd
from tests.support.daemon import Crishim, launch
from tests.support.images import build_and_push
from tests.support.registry import start_registry

Pull = Callable[[str], None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--extra-image", action="append", default=[], help="another reference to measure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crishim-bench-", dir="/var/tmp") as tmp:
        print(json.dumps(run_all(Path(tmp), args.runs, args.extra_image), indent=2))


def run_all(work: Path, runs: int, extra: list[str]) -> dict[str, object]:
    registry = start_registry(work / "registry")
    daemons: list[Crishim | Containerd] = []
    try:
        images = {"busybox (3 layers)": build_and_push(work / "images", registry, registry)["oci"].ref,
                  "60 layers": push_layered_image(work, registry, 60)}
        seed = push_seed_image(registry)
        if seed is None:
            print("Debian+nginx image not built yet: run `make test` once (it caches it), then rerun")
        else:
            images["debian+nginx (seed)"] = seed
        images.update({ref: ref for ref in extra})
        crishim = launch(work / "crishim", [registry.host])
        daemons.append(crishim)
        containerd = start_containerd(work / "containerd", [registry.host])
        daemons.append(containerd)
        results: dict[str, object] = {name: compare(ref, runs, crishim, containerd) for name, ref in images.items()}
        results["peak_rss_mib"] = {"crishim": peak_rss(crishim.process.pid),  # type: ignore[union-attr]
                                   "containerd": peak_rss(containerd.process.pid)}
        return results
    finally:
        for daemon in daemons:
            daemon.cleanup() if isinstance(daemon, Crishim) else daemon.stop()
        registry.stop()


def compare(ref: str, runs: int, crishim: Crishim, containerd: Containerd) -> dict[str, float]:
    mine = timed(runs, lambda: crishim.crictl("pull", ref), lambda: crishim.crictl("rmi", ref))
    theirs = timed(runs, lambda: containerd.crictl("pull", ref), containerd.reset)
    return {"crishim_s": round(mine, 3), "containerd_s": round(theirs, 3), "ratio": round(mine / theirs, 2)}


def timed(runs: int, action: Callable[[], object], reset: Callable[[], object]) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
        reset()
    return statistics.median(samples)


def peak_rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


if __name__ == "__main__":
    main()
