from __future__ import annotations

from pathlib import Path

import pytest

from cri import config
from cri.config import Config, ImageSettings, RegistryAuth
from errdefs import InvalidArgument

FULL = """
root = "/srv/crishim"
state = "/run/crishim-test"
address = "/run/other.sock"
metrics_address = "[::1]:9100"
log_level = "debug"

[image]
snapshotter = "native"
max_concurrent_downloads = 5
pull_progress_timeout = 60

[registry]
config_path = "/etc/crishim/hosts"

[registry.auths."registry.example:5000"]
username = "alice"
password = "s3cret-password"
auth = "YWxpY2U6czNjcmV0"
identity_token = "s3cret-identity"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    cfg = config.load()
    assert cfg == Config()
    assert cfg.root == Path("/var/lib/crishim")
    assert cfg.socket == Path("/run/crishim/crishim.sock")
    assert cfg.metrics_address == "127.0.0.1:1338"
    assert cfg.log_level == "info"
    assert cfg.image == ImageSettings("overlayfs", max_concurrent_downloads=3, pull_progress_timeout=300)
    assert cfg.registry.config_path == Path("/etc/crishim/certs.d")
    assert dict(cfg.registry.auths) == {}


def test_full_file(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, FULL))
    assert cfg.root == Path("/srv/crishim")
    assert cfg.socket == Path("/run/other.sock")
    assert config.split_host_port(cfg.metrics_address) == ("::1", 9100)
    assert cfg.image.snapshotter == "native"
    assert cfg.image.max_concurrent_downloads == 5
    assert cfg.image.pull_progress_timeout == 60.0
    assert cfg.registry.config_path == Path("/etc/crishim/hosts")
    auth = cfg.registry.auths["registry.example:5000"]
    assert auth == RegistryAuth("alice", "s3cret-password", "YWxpY2U6czNjcmV0", "s3cret-identity")


def test_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, FULL))
    text = repr(cfg) + str(cfg)
    assert "alice" in text
    assert "s3cret" not in text
    assert "YWxpY2U6czNjcmV0" not in text


def test_flags_override_file(tmp_path: Path) -> None:
    overrides = {"root": "/flag/root", "state": None, "log_level": "error", "metrics_address": ""}
    cfg = config.load(write(tmp_path, FULL), overrides)
    assert cfg.root == Path("/flag/root")
    assert cfg.state == Path("/run/crishim-test")  # None means "flag not given"
    assert cfg.log_level == "error"
    assert cfg.metrics_address == ""  # "" is a value: it disables metrics


def test_socket_follows_state_unless_given() -> None:
    assert config.load(overrides={"state": "/tmp/s"}).socket == Path("/tmp/s/crishim.sock")
    assert config.load(overrides={"address": "unix:///tmp/x.sock"}).socket == Path("/tmp/x.sock")


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config.load(overrides={"root": "data"})
    assert cfg.root == tmp_path / "data"


def test_log_level_aliases() -> None:
    assert config.load(overrides={"log_level": "WARN"}).log_level == "warning"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("roots = '/x'", "'roots'"),
        ("[image]\nsnapshoter = 'native'", "'image.snapshoter'"),
        ("[registry.auths.'h:5000']\npasword = 'x'", "'registry.auths.\"h:5000\".pasword'"),
        ("[mirrors]", "'mirrors'"),
    ],
)
def test_unknown_keys_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(InvalidArgument, match=f"unknown key {named}"):
        config.load(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("root = 1", "root must be a non-empty path, got int"),
        ("root = ''", "root must be a non-empty path, got str"),
        ("log_level = true", "log_level must be a string, got bool"),
        ("[image]\nmax_concurrent_downloads = '3'", "max_concurrent_downloads must be an integer, got str"),
        ("[image]\nmax_concurrent_downloads = true", "max_concurrent_downloads must be an integer, got bool"),
        ("[image]\npull_progress_timeout = '5m'", "image.pull_progress_timeout must be a number, got str"),
        ("image = 3", "image must be a table"),
        ("[registry]\nauths = 'x'", "registry.auths must be a table"),
        ("[registry.auths.'h']\npassword = 1", "registry.auths.h.password must be a string, got int"),
    ],
)
def test_wrong_types_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        config.load(write(tmp_path, text))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"log_level": "loud"}, "log_level must be one of"),
        ({"metrics_address": "localhost"}, "metrics_address must be HOST:PORT"),
        ({"metrics_address": "localhost:99999"}, "metrics_address must be HOST:PORT"),
        ({"address": "/" + "x" * 120}, "longer than a unix socket allows"),
        ({"writable_layers_dir": "layers"}, "writable_layers_dir must be an absolute path"),
        ({"writable_layers_dir": "/var/lib/crishim"}, "writable_layers_dir must be a folder of its own"),
        ({"writable_layers_dir": "/var"}, "writable_layers_dir must be a folder of its own"),
    ],
)
def test_bad_values(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        config.load(overrides=overrides)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_concurrent_downloads", 0, "at least 1"),
        ("pull_progress_timeout", -1.0, "must not be negative"),
        ("snapshotter", "", "must not be empty"),
    ],
)
def test_image_section_checks(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ImageSettings(**{field: value})  # type: ignore[arg-type]


def test_errors_from_a_file_name_it(tmp_path: Path) -> None:
    path = write(tmp_path, "[image]\nmax_concurrent_downloads = 0")
    with pytest.raises(InvalidArgument, match=f"^{path}: "):
        config.load(path)


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not valid TOML"):
        config.load(write(tmp_path, "root = "))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot read"):
        config.load(tmp_path / "absent.toml")


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.root = Path("/elsewhere")  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.registry.auths["h"] = RegistryAuth()  # type: ignore[index]


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:1338", ("127.0.0.1", 1338)), ("[::1]:80", ("::1", 80)), (":9100", ("", 9100))],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert config.split_host_port(address) == expected


def test_stream_settings() -> None:
    parsed = config.from_dict({"stream": {"address": "0.0.0.0", "port": 10010, "enable_tls": True,
                                          "idle_timeout": 60}})
    assert (parsed.stream.address, parsed.stream.port, parsed.stream.enable_tls) == ("0.0.0.0", 10010, True)
    assert parsed.stream.idle_timeout == 60.0
    for bad, key in (({"port": 70000}, "stream.port"), ({"enable_tls": "yes"}, "stream.enable_tls"),
                     ({"tls_cert_file": "/c"}, "stream.tls_cert_file"), ({"idle_timeout": 0}, "timeouts"),
                     ({"tls_cert_file": "/c", "tls_key_file": "/k"}, "enable_tls")):
        with pytest.raises(InvalidArgument, match=key):
            config.from_dict({"stream": bad})


def test_runtime_handlers(tmp_path: Path) -> None:
    assert sorted(Config().runtimes) == ["crun", "runc"] and Config().default_runtime == "runc"
    assert Config().runtimes["crun"].optional and not Config().runtimes["runc"].optional
    text = ('default_runtime = "fast"\n[runtimes.fast]\nbinary = "/opt/crun"\nroot = "/run/fast"\n'
            '[runtimes.fast.features]\nrecursive_read_only_mounts = false\n')
    cfg = config.load(write(tmp_path, text))
    assert list(cfg.runtimes) == ["fast"]  # given tables replace the built-in ones
    fast = cfg.runtimes["fast"]
    assert (fast.binary, fast.root, fast.features.recursive_read_only_mounts) == ("/opt/crun", "/run/fast", False)
    with pytest.raises(InvalidArgument, match="default_runtime 'kata' has no"):
        config.from_dict({"default_runtime": "kata"})
    with pytest.raises(InvalidArgument, match="runtimes.runc.bogus"):
        config.from_dict({"runtimes": {"runc": {"bogus": 1}}})
