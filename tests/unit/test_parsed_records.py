"""Container records parsed from the database once per document version: kubelet lists every container each
second, and parsing a thousand documents each time cost more than the rest of ListContainers."""

from __future__ import annotations

import json

from runtime.parsed import ParsedRecords
from runtime.records import ContainerRecord, ContainerState


def _text(record: ContainerRecord) -> str:
    return json.dumps(record.to_doc())  # as the metadata database stores it


def _record(cid: str, **changes: object) -> ContainerRecord:
    return ContainerRecord(id=cid, name=f"name-{cid}", sandbox_id="pod", config_b64="", created_at=1, image_ref="i",
                           image_id="sha256:x", image_repo_digest="r", snapshot_key=cid, snapshotter="overlayfs",
                           log_path="", bundle=f"/b/{cid}").replace(**changes)


def test_an_unchanged_document_gives_the_record_parsed_before() -> None:
    parsed = ParsedRecords(ContainerRecord.from_doc)
    a, b = _record("a"), _record("b")
    first = parsed.all([_text(a), _text(b)])
    again = parsed.all([_text(a), _text(b)])
    assert first == [a, b]
    assert again[0] is first[0] and again[1] is first[1]


def test_a_changed_document_is_parsed_again() -> None:
    parsed = ParsedRecords(ContainerRecord.from_doc)
    running = _record("a", state=ContainerState.RUNNING, pid=42)
    (before,) = parsed.all([_text(running)])
    exited = running.replace(state=ContainerState.EXITED, exit_code=3)
    (after,) = parsed.all([_text(exited)])
    assert (before.state, after.state, after.exit_code) == (ContainerState.RUNNING, ContainerState.EXITED, 3)


def test_only_the_latest_listing_is_kept() -> None:
    parsed = ParsedRecords(ContainerRecord.from_doc)
    a = _record("a")
    (first,) = parsed.all([_text(a)])
    assert parsed.all([]) == []  # a removed
    (back,) = parsed.all([_text(a)])  # the same document again, say after a restore: parsed anew
    assert back == first and back is not first


def test_the_order_is_the_listings() -> None:
    parsed = ParsedRecords(ContainerRecord.from_doc)
    a, b, c = _record("a"), _record("b"), _record("c")
    parsed.all([_text(a), _text(b)])
    assert [r.id for r in parsed.all([_text(c), _text(b), _text(a)])] == ["c", "b", "a"]
