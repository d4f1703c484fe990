from pathlib import Path

import pytest

from errdefs import InvalidArgument
from store.remote.hosts import HostsConfig, is_loopback


def write_hosts(root: Path, registry: str, text: str) -> None:
    (root / registry).mkdir(parents=True)
    (root / registry / "hosts.toml").write_text(text)


@pytest.mark.parametrize(("host", "expected"), [
    ("localhost", True), ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.3.4.5", True),
    ("[::1]:5000", True), ("::1", True), ("registry.example:5000", False), ("10.0.0.1:5000", False),
])
def test_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = HostsConfig(tmp_path)
    [hub] = config.hosts_for("docker.io")
    assert hub.base_url == "https://registry-1.docker.io/v2"
    [local] = config.hosts_for("127.0.0.1:5000")
    assert (local.base_url, local.http_fallback) == ("https://127.0.0.1:5000/v2", True)
    [remote] = config.hosts_for("registry.example")
    assert remote.http_fallback is False


def test_mirrors_first_then_server(tmp_path: Path) -> None:
    write_hosts(tmp_path, "registry.example:5000", '''
server = "https://registry.example:5000"
[host."http://mirror.local:8080"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  [host."http://mirror.local:8080".header]
    x-tenant = "a"
[host."https://cache.local/prefix"]
  capabilities = ["pull"]
  override_path = true
  ca = ["/etc/ca.pem"]
''')
    mirror, cache, server = HostsConfig(tmp_path).hosts_for("registry.example:5000")
    assert (mirror.base_url, mirror.capabilities, mirror.skip_verify) == (
        "http://mirror.local:8080/v2", ("pull", "resolve"), True)
    assert mirror.headers == {"x-tenant": "a"}
    assert (cache.base_url, cache.capabilities, cache.ca) == ("https://cache.local/prefix", ("pull",), ("/etc/ca.pem",))
    assert server.base_url == "https://registry.example:5000/v2"
    assert server.capabilities == ("pull", "resolve", "push")


def test_default_folder_applies_to_every_host(tmp_path: Path) -> None:
    write_hosts(tmp_path, "_default", '[host."https://mirror.local"]\n  capabilities = ["pull"]\n')
    hosts = HostsConfig(tmp_path).hosts_for("quay.io")
    assert [h.base_url for h in hosts] == ["https://mirror.local/v2", "https://quay.io/v2"]


def test_malformed_file_is_invalid_argument(tmp_path: Path) -> None:
    write_hosts(tmp_path, "bad.example", "server = [unclosed")
    with pytest.raises(InvalidArgument, match="hosts.toml"):
        HostsConfig(tmp_path).hosts_for("bad.example")


def test_relative_tls_files_are_inside_the_hosts_toml_folder(tmp_path: Path) -> None:
    folder = tmp_path / "registry.example"
    folder.mkdir()
    (folder / "hosts.toml").write_text('server = "https://registry.example"\nca = ["ca.pem", "/etc/ssl/other.pem"]\n'
                                       'client = [["client.pem", "client.key"], "both.pem"]\n')
    [server] = HostsConfig(tmp_path).hosts_for("registry.example")
    assert server.ca == (str(folder / "ca.pem"), "/etc/ssl/other.pem")
    assert server.client_certs == ((str(folder / "client.pem"), str(folder / "client.key")),
                                   (str(folder / "both.pem"), ""))
