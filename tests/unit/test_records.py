import json

from cri.api.runtime.v1 import api_pb2
from runtime.records import ContainerRecord, ProcessUser, encode


def _record(**changes: object) -> ContainerRecord:
    base = ContainerRecord(id="c", name="n", sandbox_id="p", config_b64="", created_at=1, image_ref="i",
                           image_id="sha256:x", image_repo_digest="r", snapshot_key="c", snapshotter="overlayfs",
                           log_path="", bundle="/b")
    return base.replace(**changes)


def test_user_and_resources_survive_the_database() -> None:
    resources = api_pb2.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=1 << 26)
    record = _record(user=ProcessUser(1000, 1000, (1000, 4242)), resources_b64=encode(resources))
    again = ContainerRecord.from_doc(json.loads(json.dumps(record.to_doc())))  # as the metadata DB stores it
    assert again == record
    assert again.resources == resources


def test_nothing_limited_is_not_unknown() -> None:
    # An empty message serializes to no bytes; it must still read back as "nothing limited".
    limited_by_nothing = _record(resources_b64=encode(api_pb2.LinuxContainerResources()))
    assert limited_by_nothing.resources == api_pb2.LinuxContainerResources()
    assert _record().resources is None and _record().user is None  # records older than these fields


def test_a_record_written_before_the_fields_existed_loads() -> None:
    doc = _record().to_doc()
    del doc["user"], doc["resources_b64"]
    old = ContainerRecord.from_doc(doc)
    assert (old.user, old.resources) == (None, None)
