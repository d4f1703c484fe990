"""containerd's hosts.toml registry configuration, shared by the containerd oracle and crishim."""

from __future__ import annotations

from pathlib import Path


def write_plain_http_host(certs_dir: Path, host: str) -> Path:
    """Declare host ("127.0.0.1:PORT") as a plain-HTTP registry, the way containerd's config_path reads it."""
    folder = certs_dir / host
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hosts.toml"
    path.write_text(
        f'server = "http://{host}"\n\n'
        f'[host."http://{host}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )
    return path
