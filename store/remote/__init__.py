"""Talking to OCI distribution registries: host configuration, auth and fetching."""

from store.remote.auth import Credentials
from store.remote.client import RegistryClient
from store.remote.hosts import HostsConfig, RegistryHost

__all__ = ["Credentials", "HostsConfig", "RegistryClient", "RegistryHost"]
