"""Regenerate the SPDY/3 test vectors under tests/fixtures/spdy with moby/spdystream's framer.

Builds tests/fixtures/spdy/main.go (its go.mod pins the spdystream version), captures the frames a Go client
writes, encodes ``SERVER_FRAMES`` with crishim's framing and has the Go framer decode them. The tests read only
the committed results, so running them needs no Go; ``--decode FILE`` prints the Go framer's reading of FILE
(the framing tests use it to check crishim's current output when Go is installed).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cri.streaming.spdy_frames import HeaderCompressor, encode  # noqa: E402
from tests.support.spdy_vectors import (  # noqa: E402
    CRISHIM_BYTES,
    CRISHIM_GO_VIEW,
    FIXTURES,
    GO_CLIENT_BYTES,
    SERVER_FRAMES,
)


def build(workdir: Path) -> Path:
    binary = workdir / "spdyvectors"
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=FIXTURES, check=True)
    return binary


def go_decode(binary: Path, path: Path) -> str:
    return subprocess.run([str(binary), "decode", str(path)], check=True, capture_output=True, text=True).stdout


def crishim_bytes() -> bytes:
    compressor = HeaderCompressor()
    return b"".join(encode(frame, compressor) for frame in SERVER_FRAMES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decode", type=Path, help="print the Go framer's reading of this file and exit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        binary = build(Path(workdir))
        if args.decode:
            sys.stdout.write(go_decode(binary, args.decode))
            return
        subprocess.run([str(binary), "capture", str(GO_CLIENT_BYTES)], check=True)
        CRISHIM_BYTES.write_bytes(crishim_bytes())
        CRISHIM_GO_VIEW.write_text(go_decode(binary, CRISHIM_BYTES))
    print(f"wrote {GO_CLIENT_BYTES.name}, {CRISHIM_BYTES.name}, {CRISHIM_GO_VIEW.name} in {FIXTURES}")


if __name__ == "__main__":
    main()
