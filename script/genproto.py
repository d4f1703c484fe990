"""Regenerate the committed gRPC stubs under cri/api from pinned upstream protos.

The CRI proto comes from the Go module proxy (``go mod download``), so the stubs
match a released ``k8s.io/cri-api`` exactly. containerd's API comes from
Debian's ``golang-github-containerd-containerd-dev`` (containerd 1.6): the
service protos listed below and the ``types/`` protos they import are copied
to ``cri/api/containerd/...`` with their imports rewritten to that path, so
the stubs import as a normal package. gogoproto options only shape Go code, so
the copies drop them and the runtime needs no gogo module; every generation
checks that the copies describe the same wire format as the originals
(packages, messages, field numbers and types, services and methods).
``google/rpc/status.proto`` is imported from the ``googleapis-common-protos``
wheel, which is also what the generated code imports at run time.

``--check`` regenerates into a temporary folder and fails when the committed
stubs differ.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

CRI_API_MODULE = "k8s.io/cri-api"
CRI_API_VERSION = "v0.36.0"
REPO = Path(__file__).resolve().parent.parent
API_DIR = REPO / "cri" / "api"
# Each proto is compiled at this path so the generated imports are package paths.
CRI_PROTO_DEST = Path("cri/api/runtime/v1/api.proto")

GOCODE = Path("/usr/share/gocode/src")
CONTAINERD_DEB = "golang-github-containerd-containerd-dev"
CONTAINERD_IMPORT_ROOT = "github.com/containerd/containerd/api"
CONTAINERD_API = GOCODE / CONTAINERD_IMPORT_ROOT
CONTAINERD_DEST = Path("cri/api/containerd")
# The services crishim serves; the types they import are found by following imports.
CONTAINERD_SERVICES = (
    "services/introspection/v1/introspection.proto",
    "services/version/v1/version.proto",
    "services/namespaces/v1/namespace.proto",
    "services/images/v1/images.proto",
    "services/content/v1/content.proto",
    "services/snapshots/v1/snapshots.proto",
    "services/leases/v1/leases.proto",
    "services/diff/v1/diff.proto",
)
# Only to compile the unmodified originals for the wire-format comparison.
GOGO_INCLUDE = GOCODE / "github.com/gogo/protobuf"
GOGO_DEB = "golang-github-gogo-protobuf-dev"
GOOGLEAPIS_DIST = "googleapis-common-protos"

_CONTAINERD_IMPORT = re.compile(rf'^import\s+(?:weak\s+|public\s+)?"{re.escape(CONTAINERD_IMPORT_ROOT)}/([^"]+)";',
                                re.MULTILINE)
_GOGO_IMPORT = re.compile(r'^\s*import\s+(?:weak\s+)?"gogoproto/gogo\.proto";[ \t]*\n', re.MULTILINE)
_GOGO_OPTION_STATEMENT = re.compile(r'^\s*option\s+\(gogoproto\.\w+\)\s*=\s*[^;]+;[ \t]*\n', re.MULTILINE)
_GOGO_OPTION = re.compile(r'\(gogoproto\.\w+\)\s*=\s*(?:"(?:[^"\\]|\\.)*"|[\w.]+)')
_FIELD_OPTIONS = re.compile(r"\s*\[([^\]]*)\]")


def download_module(module: str, version: str) -> Path:
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        check=True, capture_output=True, text=True, cwd=tempfile.gettempdir(),
    )
    return Path(json.loads(out.stdout)["Dir"])


def generate(out_root: Path) -> None:
    cri_dir = download_module(CRI_API_MODULE, CRI_API_VERSION)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        dest = src / CRI_PROTO_DEST
        dest.parent.mkdir(parents=True)
        shutil.copyfile(cri_dir / "pkg/apis/runtime/v1/api.proto", dest)
        protoc([src], stub_outputs(out_root, grpc=True), [CRI_PROTO_DEST])
    generate_containerd(out_root)
    for pkg in (out_root / "cri/api").rglob("*"):
        if pkg.is_dir():
            (pkg / "__init__.py").touch()
    (out_root / "cri/api/__init__.py").touch()
    (out_root / "cri/api/VERSIONS").write_text(
        f"{CRI_API_MODULE} {CRI_API_VERSION}\n"
        f"{CONTAINERD_IMPORT_ROOT} {deb_version(CONTAINERD_DEB)} (Debian {CONTAINERD_DEB})\n"
    )


def generate_containerd(out_root: Path) -> None:
    """containerd's services and their types, stripped of gogoproto, at ``cri/api/containerd``."""
    if not CONTAINERD_API.is_dir():
        raise SystemExit(f"{CONTAINERD_API} is missing: install Debian's {CONTAINERD_DEB}")
    sources = import_closure(CONTAINERD_SERVICES)
    googleapis = googleapis_include()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        for rel in sources:
            dest = src / CONTAINERD_DEST / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(rewrite_imports(strip_gogo((CONTAINERD_API / rel).read_text())))
        copies = [CONTAINERD_DEST / rel for rel in sources]
        services = [CONTAINERD_DEST / rel for rel in sources if rel in CONTAINERD_SERVICES]
        types = [path for path in copies if path not in services]
        protoc([src, googleapis], stub_outputs(out_root, grpc=False), types)
        protoc([src, googleapis], stub_outputs(out_root, grpc=True), services)
        assert_same_wire_format(sources, src, googleapis)


def import_closure(roots: Iterable[str]) -> list[str]:
    """``roots`` and every containerd proto they import, directly or not, relative to the API root."""
    seen: list[str] = []
    pending = list(roots)
    while pending:
        rel = pending.pop(0)
        if rel in seen:
            continue
        seen.append(rel)
        pending += _CONTAINERD_IMPORT.findall((CONTAINERD_API / rel).read_text())
    return sorted(seen)


def strip_gogo(text: str) -> str:
    """Drop the gogo.proto import and every ``(gogoproto.*)`` option; nothing else changes."""
    text = _GOGO_IMPORT.sub("", text)
    text = _GOGO_OPTION_STATEMENT.sub("", text)
    text = _FIELD_OPTIONS.sub(_without_gogo_options, text)
    if "gogoproto" in text:
        raise SystemExit("a gogoproto option was left in a copied proto: extend strip_gogo")
    return text


def _without_gogo_options(match: re.Match[str]) -> str:
    if "gogoproto" not in match.group(1):
        return match.group(0)
    kept = [part.strip() for part in _GOGO_OPTION.sub("", match.group(1)).split(",") if part.strip()]
    return f" [{', '.join(kept)}]" if kept else ""


def rewrite_imports(text: str) -> str:
    return text.replace(f'"{CONTAINERD_IMPORT_ROOT}/', f'"{CONTAINERD_DEST.as_posix()}/')


def googleapis_include() -> Path:
    """The folder holding ``google/rpc/status.proto`` from the googleapis-common-protos wheel."""
    import google.rpc

    for folder in google.rpc.__path__:
        if (Path(folder) / "status.proto").exists():
            return Path(folder).parent.parent
    raise SystemExit(f"google/rpc/status.proto not found: pip install {GOOGLEAPIS_DIST}")


def stub_outputs(out_root: Path, *, grpc: bool) -> list[str]:
    outputs = [f"--python_out={out_root}", f"--pyi_out={out_root}"]
    return [*outputs, f"--grpc_python_out={out_root}"] if grpc else outputs


def protoc(includes: list[Path], outputs: list[str], protos: list[Path]) -> None:
    # Output only on failure: the unmodified originals warn about their unused gogo import.
    out = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", *(f"-I{i}" for i in includes), *outputs,
         *(str(p) for p in protos)],
        capture_output=True, text=True, cwd=includes[0],
    )
    if out.returncode != 0:
        raise SystemExit(f"protoc failed:\n{out.stdout}{out.stderr}")


def assert_same_wire_format(sources: list[str], copies_root: Path, googleapis: Path) -> None:
    """Fail unless each stripped copy describes exactly what its original does, options aside.

    ctr sends fully qualified method names and encodes by field number, so
    packages, names, numbers, types and labels must all survive the copy.
    """
    if not GOGO_INCLUDE.is_dir():
        raise SystemExit(f"{GOGO_INCLUDE} is missing: install Debian's {GOGO_DEB}")
    with tempfile.TemporaryDirectory() as tmp:
        originals = _descriptors(Path(tmp) / "originals.pb", [GOCODE, GOGO_INCLUDE, googleapis],
                                 [Path(CONTAINERD_IMPORT_ROOT) / rel for rel in sources])
        copies = _descriptors(Path(tmp) / "copies.pb", [copies_root, googleapis],
                              [CONTAINERD_DEST / rel for rel in sources])
    for rel in sources:
        before = _wire_shape(originals[f"{CONTAINERD_IMPORT_ROOT}/{rel}"])
        after = _wire_shape(copies[f"{CONTAINERD_DEST.as_posix()}/{rel}"])
        if before != after:
            raise SystemExit(f"{rel}: the copy without gogoproto changes the wire format")


def _descriptors(out: Path, includes: list[Path], protos: list[Path]) -> dict[str, Any]:
    protoc(includes, [f"--descriptor_set_out={out}"], protos)
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return {f.name: f for f in files}


def _wire_shape(original: Any) -> bytes:
    """The descriptor without what cannot reach the wire: its own path, imports and options."""
    shape = descriptor_pb2.FileDescriptorProto()
    shape.CopyFrom(original)
    for name in ("name", "dependency", "weak_dependency", "public_dependency", "source_code_info"):
        shape.ClearField(name)
    _clear_options(shape)
    return bytes(shape.SerializeToString(deterministic=True))


def _clear_options(message: Any) -> None:
    for field, value in message.ListFields():
        if field.name == "options":
            message.ClearField("options")
        elif field.message_type is not None:
            for item in (value if field.is_repeated else [value]):
                _clear_options(item)


def deb_version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout:
        raise SystemExit(f"Debian package {package} is not installed")
    return out.stdout


def differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    diffs = [str(Path(a) / n) for n in cmp.left_only + cmp.right_only + cmp.diff_files]
    for sub in cmp.common_dirs:
        diffs += differences(a / sub, b / sub)
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when committed stubs drift")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = Path(tmp) / "cri/api"
        if args.check:
            drift = differences(fresh, API_DIR)
            for path in drift:
                print(f"drift: {path}", file=sys.stderr)
            return 1 if drift else 0
        shutil.rmtree(API_DIR, ignore_errors=True)
        shutil.copytree(fresh, API_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
