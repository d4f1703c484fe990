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


def write_mirror_host(certs_dir: Path, registry: str, mirror: str) -> Path:
    """Serve registry ("registry.k8s.io") from the plain-HTTP mirror ("127.0.0.1:PORT") and from nowhere else:
    the mirror is the registry's server, so a pull it cannot answer fails instead of going out to the network."""
    folder = certs_dir / registry
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hosts.toml"
    path.write_text(
        f'server = "http://{mirror}"\n\n'
        f'[host."http://{mirror}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )
    return path
