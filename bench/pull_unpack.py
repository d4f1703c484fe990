"""Pull + unpack, crishim against containerd 1.6's CRI, same images from one local registry, same run.

    .venv/bin/python -m bench.pull_unpack [--runs 5] [--tmpfs] [--keep-caches] [--hold SECONDS]

Images: busybox (the test suite's three-layer image), 60 layers of one file each, and the seed's
Debian+nginx image (built and cached by the test fixtures under /var/cache/crishim-tests); then ten
different images (five random layers each) pulled at once, and the seed image asked for by 20 clients at
once (the wall time until all are done). Samples
alternate between the daemons (crishim first on even runs, containerd first on odd ones) and every sample
is cold: before it, the image is removed on both sides and both collectors have dropped its content and
snapshots, then dirty pages are written back (``os.sync``) and, unless ``--keep-caches``, the page cache
is dropped, so neither side pays for the other's writeback or reads the other's warm pages. A sample is
``crictl pull`` end to end, crictl's start-up included on both sides.

Both roots live on the same disk (``/var/tmp``), or on one tmpfs with ``--tmpfs``, which takes the disk
out and shows the CPU side. The report gives medians, the spread, the ratio crishim / containerd (lower is
better for crishim), each daemon's peak resident memory while pulling each image, and the CPU time per
pull of each daemon (with its reaped children, the layer-applying workers) and of the registry serving
it: on a machine with few cores, daemon, registry and kernel share them, and a pull that keeps them all
busy is bound by CPU, not by waits. ``--hold SECONDS`` keeps both daemons up afterwards and prints crictl
command lines, to time a pull by hand (``time crictl pull``) as an independent check of the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.disk import can_drop_caches, flush
from bench.images import push_layered_image, push_seed_image
from bench.proc_stat import cpu_seconds
from tests.support.containerd import Containerd, start_containerd
from tests.support.crictl import Crictl
from tests.support.daemon import Crishim, CrishimOptions
from tests.support.images import build_and_push
from tests.support.procs import wait_until
from tests.support.registry import Registry, start_registry


@dataclass
class Side:
    name: str
    crictl: Crictl
    pid: int
    empty: Callable[[], bool]  # no image content and no snapshot left

    def remove_all(self) -> None:
        self.crictl.run("rmi", "--all", check=False)
        wait_until(self.empty, timeout=60, what=f"{self.name} to collect every image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tmpfs", action="store_true", help="both daemons' roots on one tmpfs")
    parser.add_argument("--keep-caches", action="store_true", help="sync only, keep the page cache")
    parser.add_argument("--hold", type=float, default=0.0, help="keep both daemons up this long afterwards")
    parser.add_argument("--extra-image", action="append", default=[], help="another reference to measure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crishim-bench-", dir="/var/tmp") as tmp, \
            _roots(Path(tmp), args.tmpfs) as roots:
        report = run_all(Path(tmp), roots, args)
        print(json.dumps(report, indent=2))


@contextlib.contextmanager
def _roots(work: Path, tmpfs: bool) -> Iterator[Path]:
    roots = work / "roots"
    roots.mkdir()
    if not tmpfs:
        yield roots
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g", "crishim-bench", str(roots)], check=True)
    try:
        yield roots
    finally:
        subprocess.run(["umount", "-l", str(roots)], check=False)


def run_all(work: Path, roots: Path, args: argparse.Namespace) -> dict[str, object]:
    registry = start_registry(work / "registry")
    crishim: Crishim | None = None
    containerd: Containerd | None = None
    try:
        images = _push_images(work, registry)
        images.update({ref: ref for ref in args.extra_image})
        crishim = Crishim(roots / "crishim", CrishimOptions([registry.host], extra_args=["--log-level", "info"]))
        crishim.start()
        containerd = start_containerd(roots / "containerd", [registry.host], log_level="info")
        sides = [_crishim_side(crishim), _containerd_side(containerd)]
        drop = not args.keep_caches and can_drop_caches()
        results: dict[str, object] = {"roots": "tmpfs" if args.tmpfs else "disk (/var/tmp)",
                                      "page_cache_dropped": drop, "cores": os.cpu_count()}
        for name, ref in images.items():
            results[name] = compare([ref], args.runs, sides, drop, registry.process.pid)
        results["ten images at once"] = compare(
            [push_layered_image(work, registry, 5, files=1, name=f"different-{i}") for i in range(10)],
            args.runs, sides, drop, registry.process.pid)
        shared = "debian+nginx (seed)" if "debian+nginx (seed)" in images else "busybox"
        results[f"{shared} by 20 clients at once"] = compare([images[shared]], args.runs, sides, drop,
                                                                 registry.process.pid, clients=20)
        if args.hold:
            _hold(sides, images, args.hold)
        return results
    finally:
        if crishim is not None:
            crishim.cleanup()
        if containerd is not None:
            containerd.stop()
        registry.stop()


def _push_images(work: Path, registry: Registry) -> dict[str, str]:
    images = {"busybox": build_and_push(work / "images", registry, registry)["oci"].ref,
              "60 one-file layers": push_layered_image(work, registry, 60, files=1)}
    seed = push_seed_image(registry)
    if seed is None:
        print("Debian+nginx image not built yet: run its tests once (they cache it), then rerun")
    else:
        images["debian+nginx (seed)"] = seed
    return images


def _crishim_side(daemon: Crishim) -> Side:
    assert daemon.process is not None
    return Side("crishim", daemon.crictl_client, daemon.process.pid, lambda: _empty(daemon.root, daemon.blobs()))


def _containerd_side(daemon: Containerd) -> Side:
    return Side("containerd", daemon.crictl_client, daemon.process.pid, lambda: _empty(daemon.root, daemon.blobs()))


def _empty(root: Path, blobs: set[str]) -> bool:
    folder = root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
    return not blobs and not (folder.exists() and any(folder.iterdir()))


def compare(refs: list[str], runs: int, sides: list[Side], drop: bool, registry_pid: int,
            clients: int = 1) -> dict[str, object]:
    samples: dict[str, list[float]] = {side.name: [] for side in sides}
    cpu: dict[str, list[float]] = {side.name: [] for side in sides}
    registry_cpu: dict[str, list[float]] = {side.name: [] for side in sides}
    for side in sides:
        _reset_peak_rss(side.pid)
    for run in range(runs):
        order = sides if run % 2 == 0 else sides[::-1]
        for side in order:
            for each in sides:
                each.remove_all()
            flush(drop)
            daemon_cpu, served = cpu_seconds(side.pid, children=True), cpu_seconds(registry_pid)
            start = time.perf_counter()
            _pull_at_once(side.crictl, refs * clients)
            samples[side.name].append(time.perf_counter() - start)
            cpu[side.name].append(cpu_seconds(side.pid, children=True) - daemon_cpu)
            registry_cpu[side.name].append(cpu_seconds(registry_pid) - served)
    mine, theirs = (statistics.median(samples[s.name]) for s in sides)
    return {
        "crishim_s": round(mine, 3), "containerd_s": round(theirs, 3), "ratio": round(mine / theirs, 2),
        "spread_s": {name: [round(min(v), 3), round(max(v), 3)] for name, v in samples.items()},
        "peak_rss_mib": {side.name: _peak_rss(side.pid) for side in sides},
        "cpu_s": {name: round(statistics.median(v), 2) for name, v in cpu.items()},
        "registry_cpu_s": {name: round(statistics.median(v), 2) for name, v in registry_cpu.items()},
    }


def _pull_at_once(crictl: Crictl, refs: list[str]) -> None:
    if len(refs) == 1:
        crictl.run("pull", refs[0])
        return
    pulls = [subprocess.Popen(crictl.command("pull", ref), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for ref in refs]
    errors = [pull.communicate(timeout=600)[1] for pull in pulls]
    failed = [err for pull, err in zip(pulls, errors, strict=True) if pull.returncode]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(refs)} pulls failed: {failed[0]}")


def _reset_peak_rss(pid: int) -> None:
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5\n")


def _peak_rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _hold(sides: list[Side], images: dict[str, str], seconds: float) -> None:
    for side in sides:
        print(f"# {side.name}")
        for ref in images.values():
            print("time " + shlex.join(side.crictl.command("pull", ref)))
            print(shlex.join(side.crictl.command("rmi", ref)))
    print(f"# holding both daemons for {seconds:.0f} s", flush=True)
    time.sleep(seconds)


if __name__ == "__main__":
    main()
