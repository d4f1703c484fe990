"""Container create + start latency, crishim against containerd 1.6's CRI plugin, both driven by crictl.

    .venv/bin/python -m bench.container_start [--containers 50]

Each daemon gets one host-network pod (so CNI plays no part), then
``crictl create`` + ``crictl start`` of N containers running ``sleep``, one
after the other. containerd needs a pause image for its sandbox: a busybox
``sleep`` image from the same local registry stands in for it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tests.support.containerd import start_containerd
from tests.support.crictl import Crictl
from tests.support.daemon import launch
from tests.support.image_build import build_base_layout
from tests.support.procs import run
from tests.support.registry import start_registry
from tests.support.tools import binary

POD = {"metadata": {"name": "bench", "namespace": "bench", "uid": "bench-uid", "attempt": 0},
       "linux": {"security_context": {"namespace_options": {"network": 2}}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crishim-bench-", dir="/var/tmp") as tmp:
        print(json.dumps(run_all(Path(tmp), args.containers), indent=2))


def run_all(work: Path, count: int) -> dict[str, object]:
    registry = start_registry(work / "registry")
    try:
        image, pause = push_images(work, registry.host)
        crishim = launch(work / "crishim", [registry.host])
        try:
            mine = measure(crishim.crictl_client, image, count, work / "c1")
        finally:
            crishim.cleanup()
        containerd = start_containerd(work / "containerd", [registry.host], sandbox_image=pause)
        try:
            containerd.crictl("pull", pause)
            theirs = measure(containerd.crictl_client, image, count, work / "c2")
        finally:
            containerd.stop()
    finally:
        registry.stop()
    return {"containers": count, "crishim": mine, "containerd": theirs,
            "ratio_median": round(mine["median_ms"] / theirs["median_ms"], 2),
            "ratio_total": round(mine["total_s"] / theirs["total_s"], 2)}


def push_images(work: Path, host: str) -> tuple[str, str]:
    layout = build_base_layout(work / "images")
    umoci, skopeo = binary("umoci"), binary("skopeo")
    run(umoci, "config", "--image", f"{layout.path}:base", "--tag", "pause",
        "--config.cmd", "/bin/busybox", "--config.cmd", "sleep", "--config.cmd", "2147483647")
    refs = []
    for tag in ("base", "pause"):
        ref = f"{host}/bench/busybox:{tag}"
        run(skopeo, "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout.path}:{tag}",
            f"docker://{ref}")
        refs.append(ref)
    return refs[0], refs[1]


def measure(crictl: Crictl, image: str, count: int, work: Path) -> dict[str, float]:
    work.mkdir()
    crictl.run("pull", image)
    pod_file = work / "pod.json"
    pod_file.write_text(json.dumps(POD))
    pod = crictl.run("runp", str(pod_file)).stdout.strip()
    samples = []
    try:
        for i in range(count):
            config = work / f"c{i}.json"
            config.write_text(json.dumps({"metadata": {"name": f"c{i}"}, "image": {"image": image},
                                          "command": ["/bin/busybox", "sleep", "3600"], "linux": {}}))
            start = time.perf_counter()
            cid = crictl.run("create", pod, str(config), str(pod_file)).stdout.strip()
            crictl.run("start", cid)
            samples.append(time.perf_counter() - start)
    finally:
        crictl.run("stopp", pod, check=False)
        crictl.run("rmp", pod, check=False)
    return {"median_ms": round(statistics.median(samples) * 1000, 1),
            "p90_ms": round(sorted(samples)[int(len(samples) * 0.9) - 1] * 1000, 1),
            "total_s": round(sum(samples), 2)}


if __name__ == "__main__":
    main()
