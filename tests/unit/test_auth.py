import base64

import pytest

from errdefs import InvalidArgument
from store.remote.auth import Credentials, parse_challenges


def test_parses_bearer_challenge() -> None:
    [challenge] = parse_challenges(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:app:pull,push"')
    assert challenge.scheme == "bearer"
    assert challenge.params == {"realm": "https://auth.example/token", "service": "registry.example",
                                "scope": "repository:app:pull,push"}


def test_parses_several_challenges() -> None:
    challenges = parse_challenges('Basic realm="Registry Realm", Bearer realm="https://t",service=s')
    assert [(c.scheme, c.params) for c in challenges] == [
        ("basic", {"realm": "Registry Realm"}), ("bearer", {"realm": "https://t", "service": "s"})]


def test_credentials_from_cri_auth_field() -> None:
    auth = base64.b64encode(b"user:pa:ss").decode()
    assert Credentials.from_cri(auth=auth) == Credentials("user", "pa:ss")
    assert Credentials.from_cri() is None
    assert Credentials.from_cri(identity_token="tok") == Credentials(identity_token="tok")
    with pytest.raises(InvalidArgument):
        Credentials.from_cri(auth="not base64!")


def test_secrets_stay_out_of_repr() -> None:
    text = repr(Credentials("user", "hunter2", "idtok"))
    assert "hunter2" not in text and "idtok" not in text
