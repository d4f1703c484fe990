"""The images script/kind/build-images writes for kind's nodes: every image kubeadm asks for (but pause) is
there under kubeadm's name, configured as upstream's, with its binaries where kubeadm's manifests call them;
and each imports into crishim and runs.

These tests use the built set (`script/kind/build-images`, which the kind cluster's node image build runs) and
skip, saying so, when it is not built for the current inputs: they never build it. Unlike the cluster's, they
need no docker, so `make test` runs them wherever the set is built.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import pytest

from tests.support.cri_configs import container_config
from tests.support.cri_env import CriEnv
from tests.support.daemon import python_executable
from tests.support.kube_build import CACHE_ROOT, pinned_versions

REPO = Path(__file__).resolve().parents[2]
BUILD_IMAGES = REPO / "script" / "kind" / "build-images"
MANIFEST = REPO / "deploy" / "kind" / "default-cni.yaml"
PODNET = REPO / "deploy" / "kind" / "podnet"
KUBE_VERSION = pinned_versions()[0]
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NET_BIND_SERVICE = b"\x01\x00\x00\x02\x00\x04\x00\x00" + bytes(12)


@dataclass(frozen=True)
class Archive:
    """One image tarball of the set, read with tarfile alone."""

    ref: str
    path: Path
    config: dict[str, Any]
    files: dict[str, tarfile.TarInfo]  # every layer's members, the upper layers' winning


@pytest.fixture(scope="module")
def kind_images() -> Path:
    proc = subprocess.run([str(BUILD_IMAGES), "--cached"], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.skip(f"the kind images are not built for the current inputs ({proc.stderr.strip()}); "
                    f"{BUILD_IMAGES.relative_to(REPO)} builds them, as make kind does")
    return Path(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def archives(kind_images: Path) -> dict[str, Archive]:
    found = {}
    for line in (kind_images / "index.tsv").read_text().splitlines():
        ref, name = line.split("\t")
        found[ref] = read_archive(ref, kind_images / name)
    return found


def read_archive(ref: str, path: Path) -> Archive:
    with tarfile.open(path) as tar:
        def blob(digest: str) -> IO[bytes]:
            return cast(IO[bytes], tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}"))

        index = json.load(cast(IO[bytes], tar.extractfile("index.json")))
        (entry,) = index["manifests"]
        assert entry["annotations"]["io.containerd.image.name"] == ref
        manifest = json.load(blob(entry["digest"]))
        config = json.load(blob(manifest["config"]["digest"]))
        files: dict[str, tarfile.TarInfo] = {}
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=blob(layer["digest"]), mode="r|gz") as layer_tar:
                files.update({m.name: m for m in layer_tar})
    return Archive(ref, path, config, files)


def image(archives: dict[str, Archive], repository: str) -> Archive:
    (found,) = [a for ref, a in archives.items() if ref.rpartition(":")[0].endswith(repository)]
    return found


def podnet_ref() -> str:
    match = re.search(r"^\s*image:\s*(\S+)$", MANIFEST.read_text(), re.MULTILINE)
    assert match is not None
    return match.group(1)


def test_the_index_names_every_image_kubeadm_asks_for_but_pause(archives: dict[str, Archive]) -> None:
    kubeadm = CACHE_ROOT / "kube-control-plane" / KUBE_VERSION / "kubeadm"
    if not kubeadm.is_file():
        pytest.skip(f"{kubeadm} is not built (script/setup/build-kube control-plane)")
    listed = subprocess.run([str(kubeadm), "config", "images", "list", f"--kubernetes-version={KUBE_VERSION}"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert any(ref.startswith("registry.k8s.io/pause:") for ref in listed)
    wanted = {ref for ref in listed if not ref.startswith("registry.k8s.io/pause:")} | {podnet_ref()}
    assert set(archives) == wanted


def test_the_cni_manifest_is_the_repository_s(kind_images: Path) -> None:
    assert (kind_images / "default-cni.yaml").read_text() == MANIFEST.read_text()


@pytest.mark.parametrize("repository", ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"])
def test_static_images_carry_their_binaries_on_path(archives: dict[str, Archive], repository: str) -> None:
    found = image(archives, repository)
    config = found.config["config"]
    assert config["Env"] == [PATH] and "Entrypoint" not in config and "User" not in config
    names = {"etcd": ["etcd", "etcdctl", "etcdutl"]}.get(repository, [repository])
    for name in names:
        member = found.files[f"usr/local/bin/{name}"]
        assert member.isreg() and member.mode == 0o755 and member.size > 1 << 20
    assert found.files["etc/passwd"].isreg() and found.files["tmp"].mode == 0o1777


def test_kube_apiserver_and_coredns_may_bind_low_ports(archives: dict[str, Archive]) -> None:
    for repository, path in (("kube-apiserver", "usr/local/bin/kube-apiserver"), ("coredns/coredns", "coredns")):
        member = image(archives, repository).files[path]
        capability = member.pax_headers["SCHILY.xattr.security.capability"]
        assert capability.encode("utf-8", "surrogateescape") == NET_BIND_SERVICE


def test_coredns_runs_itself_as_nonroot(archives: dict[str, Archive]) -> None:
    found = image(archives, "coredns/coredns")
    config = found.config["config"]
    assert config["Entrypoint"] == ["/coredns"] and config["User"] == "nonroot:nonroot"
    assert set(config["ExposedPorts"]) == {"53/tcp", "53/udp"}
    assert "nonroot:x:65532:65532:" in _layer_file(found, "etc/passwd")


def _layer_file(found: Archive, path: str) -> str:
    with tarfile.open(found.path) as tar:
        index = json.load(cast(IO[bytes], tar.extractfile("index.json")))
        digest = index["manifests"][0]["digest"].removeprefix("sha256:")
        manifest = json.load(cast(IO[bytes], tar.extractfile(f"blobs/sha256/{digest}")))
        for layer in reversed(manifest["layers"]):
            blob = cast(IO[bytes], tar.extractfile(f"blobs/sha256/{layer['digest'].removeprefix('sha256:')}"))
            with tarfile.open(fileobj=blob, mode="r|gz") as layer_tar:
                for member in layer_tar:
                    if member.name == path:
                        return cast(IO[bytes], layer_tar.extractfile(member)).read().decode()
    raise AssertionError(f"{path} is in no layer of {found.ref}")


@pytest.mark.parametrize("tool", ["iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save",
                                  "ip6tables-restore", "conntrack", "nft"])
def test_kube_proxy_has_what_it_runs(archives: dict[str, Archive], tool: str) -> None:
    files = image(archives, "kube-proxy").files
    assert files["usr/local/bin/kube-proxy"].isreg()
    assert f"usr/sbin/{tool}" in files


def test_podnet_runs_the_repository_s_script_with_kubectl(archives: dict[str, Archive]) -> None:
    found = archives[podnet_ref()]
    assert found.config["config"]["Entrypoint"] == ["/usr/local/bin/podnet"]
    assert _layer_file(found, "usr/local/bin/podnet") == PODNET.read_text()
    assert found.files["usr/local/bin/kubectl"].isreg()
    assert found.files["usr/bin/ip"].isreg()
    assert found.files["usr/sbin/iptables"].linkname == "/etc/alternatives/iptables"
    assert found.files["etc/alternatives/iptables"].linkname == "/usr/sbin/iptables-nft"  # as on the nodes


# What each image runs in a container, and what its output must hold.
RUNS = [
    ("kube-apiserver", ["kube-apiserver", "--version"], f"Kubernetes {KUBE_VERSION}"),
    ("kube-controller-manager", ["kube-controller-manager", "--version"], f"Kubernetes {KUBE_VERSION}"),
    ("kube-scheduler", ["kube-scheduler", "--version"], f"Kubernetes {KUBE_VERSION}"),
    ("kube-proxy", ["kube-proxy", "--version"], f"Kubernetes {KUBE_VERSION}"),
    ("kube-proxy", ["iptables-save", "--version"], "(nf_tables)"),
    ("kube-proxy", ["conntrack", "--version"], "conntrack v"),
    ("etcd", ["etcd", "--version"], "etcd Version: 3.6."),
    ("etcd", ["etcdctl", "version"], "etcdctl version: 3.6."),
    ("coredns/coredns", None, "CoreDNS-1."),  # the entrypoint, given -version
    ("podnet", None, '"type": "ptp"'),  # the entrypoint, given conflist 10.244.3.0/24
    ("podnet", ["kubectl", "version", "--client"], f"Client Version: {KUBE_VERSION}"),
]


@pytest.fixture
def kind_cri(cri: CriEnv, archives: dict[str, Archive]) -> Iterator[CriEnv]:
    for found in archives.values():
        proc = subprocess.run([str(python_executable()), "-m", "cri", "-a", str(cri.daemon.socket), "image",
                               "import", str(found.path)], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert f"unpacking {found.ref} (" in proc.stdout
    yield cri


def test_each_image_imports_into_crishim_and_runs(kind_cri: CriEnv, archives: dict[str, Archive]) -> None:
    listed = {tag for entry in kind_cri.json("images")["images"] for tag in entry["repoTags"]}
    assert set(archives) <= listed
    pod = kind_cri.runp()
    for number, (repository, command, expected) in enumerate(RUNS):
        ref = podnet_ref() if repository == "podnet" else image(archives, repository).ref
        args = {"coredns/coredns": ["-version"], "podnet": ["conflist", "10.244.3.0/24"]}[repository] \
            if command is None else None
        config = container_config(f"run-{number}", ref, command=command, args=args)
        container = kind_cri.run(pod, config)
        status = kind_cri.wait_state(container, "CONTAINER_EXITED", timeout=60)
        output = kind_cri.crictl("logs", container).stdout + kind_cri.crictl("logs", container).stderr
        assert status["exitCode"] == 0, f"{ref} {command or args}: {output}"
        assert expected in output, f"{ref} {command or args}: {output}"


def test_coredns_listens_on_port_53_as_nonroot(kind_cri: CriEnv, archives: dict[str, Archive]) -> None:
    """Unprivileged, CoreDNS binds port 53 by the file capability its binary carries, as kubeadm runs it."""
    pod = kind_cri.runp()
    config = container_config("coredns", image(archives, "coredns/coredns").ref, args=["-dns.port", "53"])
    container = kind_cri.run(pod, config)
    log = kind_cri.wait_log(container, "CoreDNS-1.", timeout=30)
    time.sleep(1)  # a failed bind ends it within moments
    output = kind_cri.crictl("logs", container).stdout + kind_cri.crictl("logs", container).stderr
    assert kind_cri.state(container) == "CONTAINER_RUNNING", output
    assert ":53" in log + output and "permission denied" not in output
    bundle = Path(kind_cri.inspect(container)["info"]["bundle"])
    user = json.loads((bundle / "config.json").read_text())["process"]["user"]
    assert (user["uid"], user["gid"]) == (65532, 65532)
