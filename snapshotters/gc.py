"""Dropping committed snapshots nothing needs any more.

The caller says which snapshots are live (e.g. every image's top chain ID);
their ancestors are kept too. Active snapshots and views belong to whoever
made them and are left alone. Removal goes leaf first, since a snapshot with
children cannot be removed.
"""

from __future__ import annotations

import structlog

from errdefs import CrishimError, FailedPrecondition, NotFound
from snapshotters.snapshotter import Info, Kind, Snapshotter

__all__ = ["prune"]

log = structlog.get_logger(__name__)


def prune(sn: Snapshotter, live: set[str]) -> list[str]:
    infos: dict[str, Info] = {}
    sn.walk(lambda info: infos.__setitem__(info.name, info))
    keep = _with_ancestors(infos, live | {k for k, i in infos.items() if i.kind != Kind.COMMITTED})
    removed: list[str] = []
    doomed = set(infos) - keep
    while doomed:
        parents = {infos[k].parent for k in doomed}
        leaves = [k for k in doomed if k not in parents]
        for key in leaves:
            try:
                sn.remove(key)
                removed.append(key)
            except (NotFound, FailedPrecondition) as exc:
                log.info("snapshot.gc_skipped", key=key, reason=str(exc))
            except (CrishimError, OSError) as exc:
                # One snapshot that cannot go must not keep the others: it is retried next time.
                log.warning("snapshot.gc_failed", key=key, error=str(exc))
        doomed -= set(leaves)
    return removed


def _with_ancestors(infos: dict[str, Info], keys: set[str]) -> set[str]:
    kept: set[str] = set()
    for key in keys:
        while key and key in infos and key not in kept:
            kept.add(key)
            key = infos[key].parent
    return kept
