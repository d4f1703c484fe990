"""Regenerate the committed gRPC stubs under cri/api from pinned upstream protos.

The CRI proto comes from the Go module proxy (``go mod download``), so the stubs
match a released ``k8s.io/cri-api`` exactly. ``--check`` regenerates into a
temporary folder and fails when the committed stubs differ.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CRI_API_MODULE = "k8s.io/cri-api"
CRI_API_VERSION = "v0.36.0"
REPO = Path(__file__).resolve().parent.parent
API_DIR = REPO / "cri" / "api"
# Each proto is compiled at this path so the generated imports are package paths.
CRI_PROTO_DEST = Path("cri/api/runtime/v1/api.proto")


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
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{src}",
             f"--python_out={out_root}", f"--pyi_out={out_root}",
             f"--grpc_python_out={out_root}", str(CRI_PROTO_DEST)],
            check=True, cwd=src,
        )
    for pkg in (out_root / "cri/api", out_root / "cri/api/runtime", out_root / "cri/api/runtime/v1"):
        (pkg / "__init__.py").touch()
    (out_root / "cri/api/VERSIONS").write_text(f"{CRI_API_MODULE} {CRI_API_VERSION}\n")


def differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    diffs = [str(Path(a) / n) for n in cmp.left_only + cmp.right_only + cmp.diff_files]
    for sub in cmp.common_dirs:
        diffs += differences(a / sub, b / sub)
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
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
