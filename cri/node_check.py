"""A consistency check of a node's root and state, as ``crishim check`` runs it.

Read-only: the databases are opened read-only and nothing on disk changes. Each finding says what is wrong
and whether ``repair`` may fix it safely; repairing needs the daemon stopped (the CLI refuses otherwise).
What is checked:

- content records whose blob file is gone; blobs no namespace records and no lease holds;
- leases past their ``containerd.io/gc.expire``;
- snapshot records whose folder is gone; snapshot folders no record owns; Active snapshots that belong
  to no container (extractions a crash interrupted);
- containers recorded as created or running that no conmon supervises and that left no exit code;
- mounts under the root or state that belong to no container or pod.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from snapshotters.local import writable_snapshots
from snapshotters.registry import DRIVERS, snapshotter_root
from snapshotters.snapshotter import Kind

__all__ = ["Finding", "check_node", "repair"]

_CONTENT = "io.containerd.content.v1.content"
_META_DB = Path("io.containerd.metadata.v1.sqlite") / "meta.db"
_LABEL_EXPIRE = "containerd.io/gc.expire"
_EXTRACT_PREFIX = "extract-"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # e.g. "content-without-blob"
    subject: str  # what it is about: a digest, a snapshot key, a path
    detail: str
    repairable: bool

    def __str__(self) -> str:
        return f"{self.kind}\t{self.subject}\t{self.detail}"


def check_node(root: Path, state: Path) -> list[Finding]:
    findings: list[Finding] = []
    meta = root / _META_DB
    if meta.exists():
        with _read_only(meta) as db:
            findings += _content(db, root / _CONTENT)
            findings += _leases(db)
            containers = _objects(db, "container")
            pods = _objects(db, "sandbox")
    else:
        containers, pods = {}, {}
    findings += _unsupervised(containers, state)
    for name in DRIVERS:
        findings += _snapshots(snapshotter_root(root, name), name, {c["snapshot_key"] for c in containers.values()})
    findings += _mounts(root, state, containers, pods)
    return findings


def repair(root: Path, findings: list[Finding]) -> list[Finding]:
    """Fix the repairable findings; the ones left."""
    left = []
    for finding in findings:
        if not finding.repairable:
            left.append(finding)
            continue
        _REPAIRS[finding.kind](root, finding)
    return left


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


def _content(db: sqlite3.Connection, content_root: Path) -> list[Finding]:
    findings = []
    recorded = set()
    for namespace, digest in db.execute("SELECT namespace, digest FROM content"):
        recorded.add(digest)
        if not _blob(content_root, digest).exists():
            findings.append(Finding("content-without-blob", f"{namespace}/{digest}", "recorded, but its blob "
                                    "file is gone (a re-pull fetches it again)", True))
    leased = {key for (key,) in db.execute("SELECT key FROM lease_resources WHERE kind = 'content'")}
    blobs = content_root / "blobs"
    for algorithm in sorted(blobs.iterdir()) if blobs.exists() else ():
        for path in sorted(algorithm.iterdir()):
            digest = f"{algorithm.name}:{path.name}"
            if digest not in recorded and digest not in leased:
                findings.append(Finding("blob-unreferenced", digest, "no namespace records it and no lease "
                                        "holds it (garbage collection would remove it)", True))
    return findings


def _leases(db: sqlite3.Connection) -> list[Finding]:
    now, findings = datetime.now(UTC), []
    for namespace, lease_id, labels in db.execute("SELECT namespace, id, labels FROM leases"):
        expire = json.loads(labels).get(_LABEL_EXPIRE)
        try:
            expired = expire is not None and datetime.fromisoformat(expire) <= now
        except ValueError:
            expired = False
        if expired:
            findings.append(Finding("lease-expired", f"{namespace}/{lease_id}", f"expired at {expire}", True))
    return findings


def _objects(db: sqlite3.Connection, kind: str) -> dict[str, dict[str, object]]:
    rows = db.execute("SELECT id, doc FROM runtime_objects WHERE kind = ?", (kind,))
    return {obj_id: json.loads(doc) for obj_id, doc in rows}


def _unsupervised(containers: dict[str, dict[str, object]], state: Path) -> list[Finding]:
    findings = []
    for container_id, doc in containers.items():
        if doc.get("state") not in ("created", "running"):
            continue
        if (state / "exits" / container_id).exists() or _conmon_alive(state, container_id):
            continue
        findings.append(Finding("container-unsupervised", container_id, f"recorded {doc.get('state')}, but no "
                                "conmon supervises it and it left no exit code", False))
    return findings


def _conmon_alive(state: Path, container_id: str) -> bool:
    try:
        pid = int((state / "conmon" / container_id / "conmon.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return container_id.encode() in cmdline


def _snapshots(sn_root: Path, name: str, owned: set[object]) -> list[Finding]:
    meta = sn_root / "metadata.db"
    if not meta.exists():
        return []
    with _read_only(meta) as db:
        rows = list(db.execute("SELECT id, key, kind FROM snapshots"))
    findings = []
    writable = writable_snapshots(sn_root)
    folders = [sn_root / "snapshots", *([writable] if writable is not None else [])]
    for sid, key, kind in rows:
        if not any((folder / str(sid)).exists() for folder in folders):
            findings.append(Finding("snapshot-without-folder", f"{name}:{key}", f"record {sid}: its folder "
                                    "is gone", True))
        if kind == Kind.ACTIVE and key not in owned:
            what = "an extraction a crash interrupted" if key.startswith(_EXTRACT_PREFIX) else "no container"
            findings.append(Finding("snapshot-active-unowned", f"{name}:{key}", f"Active snapshot of {what}",
                                    True))
    ids = {str(sid) for sid, _, _ in rows}
    for folder in folders:
        for entry in sorted(folder.iterdir()) if folder.exists() else ():
            if entry.name not in ids:
                findings.append(Finding("snapshot-folder-unowned", str(entry), f"{name}: no record owns it", True))
    return findings


def _mounts(root: Path, state: Path, containers: dict[str, dict[str, object]],
            pods: dict[str, dict[str, object]]) -> list[Finding]:
    owned = {str(Path(str(doc.get("bundle", ""))) / "rootfs") for doc in containers.values()}
    # A pod's namespace pins and shared files (its shm) live under folders named by its id.
    pod_folders = {"netns", "ipcns", "utsns", "pidns", "sandboxes"}
    findings = []
    for mount_point in _mount_points():
        inside_state = mount_point.startswith(f"{state}/")
        if not (inside_state or mount_point.startswith(f"{root}/")) or mount_point in owned:
            continue
        parts = Path(mount_point).relative_to(state).parts if inside_state else ()
        if parts and parts[0] in pod_folders and (len(parts) == 1 or parts[1] in pods):
            continue  # the folder itself is a private mount the pins are made under
        findings.append(Finding("mount-unowned", mount_point, "mounted under crishim's folders, owned by no "
                                "container", True))
    return findings


def _mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        field = line.split()[4]
        points.append(field.encode().decode("unicode_escape"))
    return points


def _blob(content_root: Path, digest: str) -> Path:
    algorithm, _, hex_ = digest.partition(":")
    return content_root / "blobs" / algorithm / hex_


def _repair_content(root: Path, finding: Finding) -> None:
    namespace, _, digest = finding.subject.partition("/")
    with sqlite3.connect(root / _META_DB) as db:
        db.execute("DELETE FROM content WHERE namespace = ? AND digest = ?", (namespace, digest))


def _repair_blob(root: Path, finding: Finding) -> None:
    _blob(root / _CONTENT, finding.subject).unlink(missing_ok=True)


def _repair_lease(root: Path, finding: Finding) -> None:
    namespace, _, lease_id = finding.subject.partition("/")
    with sqlite3.connect(root / _META_DB) as db:
        db.execute("DELETE FROM lease_resources WHERE namespace = ? AND lease_id = ?", (namespace, lease_id))
        db.execute("DELETE FROM leases WHERE namespace = ? AND id = ?", (namespace, lease_id))


def _repair_snapshot(root: Path, finding: Finding) -> None:
    name, _, key = finding.subject.partition(":")
    snapshotter = DRIVERS[name](snapshotter_root(root, name)).open()
    try:
        snapshotter.remove(key)
    finally:
        snapshotter.close()


def _repair_folder(root: Path, finding: Finding) -> None:
    shutil.rmtree(finding.subject, ignore_errors=True)


def _repair_mount(root: Path, finding: Finding) -> None:
    from snapshotters.mount import unmount

    unmount(Path(finding.subject), detach=True)


_REPAIRS = {
    "content-without-blob": _repair_content,
    "blob-unreferenced": _repair_blob,
    "lease-expired": _repair_lease,
    "snapshot-without-folder": _repair_snapshot,
    "snapshot-active-unowned": _repair_snapshot,
    "snapshot-folder-unowned": _repair_folder,
    "mount-unowned": _repair_mount,
}
