"""The binaries the critest images are made of, from Debian parts on this host and its apt mirror.

- busybox: Debian's dynamically linked ``busybox`` package (pinned), not the host's busybox-static. The static
  build runs applets inside the shell (``sh -c ls`` never execs ``/bin/ls``), so critest's MaskedPaths spec,
  which masks ``/bin/ls`` and expects ``/bin/sh: ls: Permission denied``, cannot pass with it.
- pgrep (procps) and ipcs (util-linux): critest execs both and neither Debian busybox has them; taken from the
  host with the shared libraries ``ldd`` names, as are busybox's own.
- catatonit (static): the pause image's process.
- nnp: what the upstream nonewprivs image runs, ``Effective uid: N``; a setuid-root binary needs a real
  executable (the kernel ignores setuid on scripts), so a two-line Go program is built with the local toolchain.

The busybox binary and nnp are kept under /var/cache/crishim-tests/, in a folder named after a hash of this
module, so only the first run needs the apt mirror and the Go toolchain.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import run
from tests.support.tools import binary, require_file

CACHE_ROOT = Path("/var/cache/crishim-tests")
BUSYBOX_PACKAGE = "busybox=1:1.35.0-4+deb12u1+b1"
HOST_TOOLS = (Path("/usr/bin/pgrep"), Path("/usr/bin/ipcs"))
CATATONIT = Path("/usr/bin/catatonit")
NNP_SOURCE = """package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\\n", os.Geteuid())
}
"""


@dataclass(frozen=True)
class Parts:
    busybox: bytes
    applets: tuple[str, ...]
    tools: dict[str, bytes]  # name in /bin -> ELF
    libraries: dict[str, bytes]  # absolute path in the image -> contents
    catatonit: bytes
    nnp: bytes


def provide_parts() -> Parts:
    """The cached busybox and nnp (built on first use) and the host's tools and libraries."""
    folder = _cached_folder()
    busybox = folder / "busybox"
    tools = {path.name: path.read_bytes() for path in HOST_TOOLS}
    require_file(CATATONIT, "catatonit")
    return Parts(
        busybox=busybox.read_bytes(),
        applets=tuple((folder / "applets").read_text().split()),
        tools=tools,
        libraries=_libraries([busybox, *HOST_TOOLS]),
        catatonit=CATATONIT.read_bytes(),
        nnp=(folder / "nnp").read_bytes(),
    )


def recipe_key() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _cached_folder() -> Path:
    final = CACHE_ROOT / f"critest-parts-{recipe_key()}"
    if (final / "nnp").is_file():
        return final
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with (CACHE_ROOT / ".critest-parts.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "nnp").is_file():
            tmp = Path(tempfile.mkdtemp(prefix=".critest-parts-", dir=CACHE_ROOT))
            try:
                _build(tmp)
                os.rename(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def _build(folder: Path) -> None:
    (folder / "busybox").write_bytes(_busybox_from_deb(folder))
    (folder / "busybox").chmod(0o755)
    listing = run(folder / "busybox", "--list").stdout.split()
    (folder / "applets").write_text("\n".join(a for a in listing if a != "busybox") + "\n")
    _build_nnp(folder)


def _busybox_from_deb(folder: Path) -> bytes:
    proc = subprocess.run(["apt-get", "download", BUSYBOX_PACKAGE], cwd=folder, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode:
        raise RuntimeError(f"apt-get download {BUSYBOX_PACKAGE} failed (is the pin still on the mirror?):\n"
                           f"{proc.stderr}")
    deb = next(folder.glob("busybox_*.deb"))
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    deb.unlink()
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.extractfile("./bin/busybox")
        if member is None:
            raise RuntimeError(f"{BUSYBOX_PACKAGE} has no /bin/busybox")
        return member.read()


def _build_nnp(folder: Path) -> None:
    go = binary("go")
    source = folder / "nnp.go"
    source.write_text(NNP_SOURCE)
    env = {"CGO_ENABLED": "0", "GO111MODULE": "off", "GOTOOLCHAIN": "local", "GOFLAGS": ""}
    run(go, "build", "-trimpath", "-ldflags", "-s -w", "-o", folder / "nnp", source, env=env, timeout=600)
    source.unlink()


def _libraries(executables: list[Path]) -> dict[str, bytes]:
    """Every shared object the executables load, at the path the loader looks for it, by contents."""
    found: dict[str, bytes] = {}
    for exe in executables:
        for line in run(binary("ldd"), exe).stdout.splitlines():
            match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if match:
                found[match.group(1)] = Path(match.group(1)).resolve().read_bytes()
    return found
