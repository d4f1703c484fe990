"""A three-node kind cluster on crishim against the same cluster on containerd 1.6, same node image recipe.

    .venv/bin/python -m bench.kind_cluster [--runs 3]

kindest/node cannot be downloaded here, so the comparison node image is built from the same recipe
(script/kind/build-node-image with NODE_RUNTIME=containerd): the same Debian root, kubelet, kubeadm, images,
pod network add-on, runc and systemd cgroup driver, with Debian's containerd 1.6 and its CRI (a catatonit pause image)
in crishim's place. Runs alternate between the two (crishim first on even runs) and each starts after a sync
and a dropped page cache. Reported per side, medians: `kind create cluster` until it returns, until all three
nodes are Ready, and until every kube-system pod runs (CoreDNS, kube-proxy and the pod network on every node);
and the ratio crishim / containerd (lower is better for crishim).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.disk import can_drop_caches, flush
from tests.support.kind_cluster import DOCKER_HOST, REPO, kind_cluster, kind_docker, system_pods_ready
from tests.support.kube_build import CACHE_ROOT, pinned_versions
from tests.support.procs import run, wait_until

CONFIGS = {"crishim": REPO / "kind-config.yaml", "containerd": REPO / "bench" / "kind-config-containerd.yaml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with kind_docker() as docker_env, tempfile.TemporaryDirectory(prefix="crishim-bench-kind-") as tmp:
        images = {side: _node_image(side, docker_env) for side in CONFIGS}
        samples: dict[str, list[dict[str, float]]] = {side: [] for side in CONFIGS}
        for i in range(args.runs):
            order = list(CONFIGS) if i % 2 == 0 else list(reversed(CONFIGS))
            for side in order:
                work = Path(tmp) / f"{side}-{i}"
                work.mkdir()
                samples[side].append(_bring_up(side, images[side], work, docker_env))
        print(json.dumps(_report(samples, images), indent=2))


def _node_image(side: str, docker_env: dict[str, str]) -> str:
    env = docker_env | {"NODE_RUNTIME": side}
    return run(REPO / "script" / "kind" / "build-node-image", env=env, timeout=3600).stdout.split()[-1]


def _bring_up(side: str, image: str, work: Path, docker_env: dict[str, str]) -> dict[str, float]:
    kubectl = str(CACHE_ROOT / "kube" / pinned_versions()[0] / "kubectl")
    flush(can_drop_caches())
    with kind_cluster(work, docker_env, image, kubectl, name=f"bench-{side}", config=CONFIGS[side]) as cluster:
        wait_until(lambda: system_pods_ready(cluster), timeout=600, interval=0.5,
                   what=f"{side}: kube-system pods ready")
        return {"create": cluster.timings.create_seconds, "nodes_ready": cluster.timings.ready_seconds,
                "system_pods_ready": time.monotonic() - cluster.timings.started}


def _report(samples: dict[str, list[dict[str, float]]], images: dict[str, str]) -> dict[str, object]:
    report: dict[str, object] = {"docker": DOCKER_HOST, "node_images": images, "runs": len(samples["crishim"])}
    for phase in ("create", "nodes_ready", "system_pods_ready"):
        medians = {side: statistics.median(s[phase] for s in runs) for side, runs in samples.items()}
        report[phase] = {
            **{f"{side}_s": round(m, 1) for side, m in medians.items()},
            **{f"{side}_samples": [round(s[phase], 1) for s in runs] for side, runs in samples.items()},
            "ratio_crishim_containerd": round(medians["crishim"] / medians["containerd"], 2),
        }
    return report


if __name__ == "__main__":
    main()
