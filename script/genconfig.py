"""Write the configuration reference, docs/configuration.md, and deploy/config.toml from cri/config.py.

``--check`` writes nothing and fails when either file differs from what it would write.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cri import config_reference  # noqa: E402  (after the path: run as a script from any folder)

FILES = {
    REPO / "docs" / "configuration.md": config_reference.markdown,
    REPO / "deploy" / "config.toml": config_reference.toml,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a file differs instead of writing it")
    args = parser.parse_args()
    stale = []
    for path, render in FILES.items():
        text = render()
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(str(path.relative_to(REPO)))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print(f"out of date (run script/genconfig.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
