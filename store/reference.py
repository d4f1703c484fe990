"""Image references normalised the way docker and containerd do.

``busybox`` becomes ``docker.io/library/busybox:latest``; a reference may carry a
tag, a digest, or both (``name:tag@sha256:...``, where the digest wins when
fetching but the tag is kept for the image name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from errdefs import InvalidArgument
from store.digest import Digest

__all__ = ["DEFAULT_DOMAIN", "Reference"]

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
_MAX_NAME = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
)
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True, slots=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse and normalise; a reference without tag or digest gets ``latest``."""
        if not text:
            raise InvalidArgument("invalid reference: empty")
        name, tag, digest = _split(text)
        domain, path = _split_domain(name, text)
        if len(f"{domain}/{path}") > _MAX_NAME:
            raise InvalidArgument(f"invalid reference {text!r}: repository name longer than {_MAX_NAME}")
        if tag is None and digest is None:
            tag = "latest"
        return cls(domain, path, tag, digest)

    @property
    def name(self) -> str:
        """The repository with its domain, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def hostname(self) -> str:
        """The domain without its port, as containerd names distribution-source labels."""
        if self.domain.startswith("["):
            return self.domain.partition("]")[0] + "]"
        return self.domain.partition(":")[0]

    @property
    def object(self) -> str:
        """What to ask the registry for: the digest if there is one, else the tag."""
        return str(self.digest) if self.digest else str(self.tag)

    def with_digest(self, digest: Digest) -> Reference:
        """The canonical ``name@digest`` form containerd records as a repo digest."""
        return Reference(self.domain, self.path, None, digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _split(text: str) -> tuple[str, str | None, Digest | None]:
    name, at, digest_text = text.partition("@")
    digest = Digest.parse(digest_text) if at else None
    tag = None
    last = name.rfind(":")
    if last > name.rfind("/"):
        name, tag = name[:last], name[last + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument(f"invalid reference {text!r}: invalid tag {tag!r}")
    return name, tag, digest


def _split_domain(name: str, text: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == _LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if not _DOMAIN_RE.fullmatch(domain):
        raise InvalidArgument(f"invalid reference {text!r}: invalid domain {domain!r}")
    if path.lower() != path:
        raise InvalidArgument(f"invalid reference {text!r}: repository name must be lowercase")
    if not path or not all(_PATH_COMPONENT_RE.fullmatch(c) for c in path.split("/")):
        raise InvalidArgument(f"invalid reference {text!r}: invalid repository name")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    return domain, path
