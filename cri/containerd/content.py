"""containerd.services.content.v1 over the content store and the metadata database (``ctr content ...``).

A blob is visible in a namespace only while the metadata database records it
there, as in containerd's metadata layer; the bytes come from the one shared
content store. Delete drops the namespace's record and then runs garbage
collection, which removes the file once no namespace records it. Ingests
(downloads in progress) are not per namespace in crishim: Status,
ListStatuses and Abort see all of them.

Write takes a blob from a client (``ctr images import``, ``kind load``) as
containerd's does: stat, resumable writes at the current offset, a commit
that verifies digest and size and records the blob in the namespace, and the
call's lease protecting it until an image refers to it. A blob some namespace
already holds is AlreadyExists at once when its digest is given up front;
one whose digest is known only at commit is verified then.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf import empty_pb2

from cri.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from cri.containerd.convert import timestamp, updated_labels, validate_labels
from cri.containerd.namespace import lease_from, required_namespace
from errdefs import AlreadyExists, DataLoss, FailedPrecondition, InvalidArgument, NotFound, OutOfRange
from snapshotters.filters import matches_fields
from store.content import ContentStore, IngestStatus, Writer
from store.digest import Digest
from store.gc import LEASE_CONTENT
from store.metadata import ContentRecord, MetadataDB

__all__ = ["ContentService", "digest_argument"]

# As containerd: list results go out in blocks of 100, reads in chunks of 1 MiB.
LIST_BLOCK = 100
READ_CHUNK = 1 << 20


class ContentService(content_pb2_grpc.ContentServicer):
    def __init__(self, content: ContentStore, db: MetadataDB, collect_garbage: Callable[[], object]) -> None:
        self._content = content
        self._db = db
        self._collect_garbage = collect_garbage

    def Info(self, request: Any, context: Any) -> content_pb2.InfoResponse:
        namespace = required_namespace(context)
        record = self._db.get_content(namespace, digest_argument(request.digest))
        return content_pb2.InfoResponse(info=_info(record))

    def Update(self, request: Any, context: Any) -> content_pb2.UpdateResponse:
        namespace = required_namespace(context)
        digest = digest_argument(request.info.digest)
        with self._db.transaction() as tx:
            current = tx.get_content(namespace, digest)
            labels = updated_labels(current.labels, dict(request.info.labels), request.update_mask.paths,
                                    f"content info {digest}")
            tx.set_content_labels(namespace, digest, labels)
            return content_pb2.UpdateResponse(info=_info(tx.get_content(namespace, digest)))

    def List(self, request: Any, context: Any) -> Iterator[content_pb2.ListContentResponse]:
        namespace = required_namespace(context)
        filters = list(request.filters)
        records = [r for r in self._db.list_content(namespace) if matches_fields(_fields(r), filters)]
        for start in range(0, len(records), LIST_BLOCK):
            block = records[start:start + LIST_BLOCK]
            # containerd leaves updated_at out of listings.
            yield content_pb2.ListContentResponse(info=[_info(r, updated=False) for r in block])

    def Delete(self, request: Any, context: Any) -> empty_pb2.Empty:
        namespace = required_namespace(context)
        digest = digest_argument(request.digest)
        with self._db.transaction() as tx:
            tx.get_content(namespace, digest)
            tx.delete_content(namespace, digest)
        self._collect_garbage()
        return empty_pb2.Empty()

    def Read(self, request: Any, context: Any) -> Iterator[content_pb2.ReadContentResponse]:
        namespace = required_namespace(context)
        digest = digest_argument(request.digest)
        total = self._db.get_content(namespace, digest).size
        offset, size = _section(request.offset, request.size, total)
        with self._content.reader(digest) as blob:
            blob.seek(offset)
            while size > 0:
                data = blob.read(min(READ_CHUNK, size))
                if not data:
                    raise DataLoss(f"content {digest}: blob shorter than its recorded {total} bytes")
                yield content_pb2.ReadContentResponse(offset=offset, data=data)
                offset += len(data)
                size -= len(data)

    def Status(self, request: Any, context: Any) -> content_pb2.StatusResponse:
        try:
            status = self._content.ingest_status(request.ref)
        except NotFound:
            raise NotFound(f"could not get status for ref {request.ref!r}: not found") from None
        return content_pb2.StatusResponse(status=_status(status))

    def ListStatuses(self, request: Any, context: Any) -> content_pb2.ListStatusesResponse:
        filters = list(request.filters)
        statuses = [s for s in self._content.ingests() if matches_fields({"ref": s.ref}, filters)]
        return content_pb2.ListStatusesResponse(statuses=[_status(s) for s in sorted(statuses, key=_ref)])

    def Abort(self, request: Any, context: Any) -> empty_pb2.Empty:
        self._content.abort(request.ref)
        return empty_pb2.Empty()

    def Write(self, requests: Iterator[Any], context: Any) -> Iterator[content_pb2.WriteContentResponse]:
        namespace, lease = required_namespace(context), lease_from(context)
        first = next(requests, None)
        if first is None:
            return
        if not first.ref:
            raise InvalidArgument("first message must have a reference")
        expected = digest_argument(first.expected) if first.expected else None
        if expected is not None:
            self._refuse_present(namespace, lease, expected)
        # A client that goes away closes this generator: the ingest stays on disk for it to resume.
        with self._content.writer(first.ref, expected, max(first.total, 0), wait=False) as writer:
            for request in itertools.chain([first], requests):
                yield self._write_step(namespace, lease, first.ref, writer, request)
                if request.action == content_pb2.COMMIT:
                    return

    def _refuse_present(self, namespace: str, lease: str | None, digest: Digest) -> None:
        """AlreadyExists when the namespace holds the blob; one another namespace holds joins this one."""
        with self._db.transaction() as tx:
            try:
                tx.get_content(namespace, digest)
            except NotFound:
                if not self._content.exists(digest):
                    return
                tx.put_content(namespace, digest, self._content.info(digest).size)
            if lease:
                tx.add_lease_resource(namespace, lease, LEASE_CONTENT, str(digest))
        raise AlreadyExists(f"blob with expected digest {digest} exists")

    def _write_step(self, namespace: str, lease: str | None, ref: str, writer: Writer,
                    request: Any) -> content_pb2.WriteContentResponse:
        response = content_pb2.WriteContentResponse(action=request.action, offset=writer.offset)
        if request.action == content_pb2.STAT:
            status = self._content.ingest_status(ref)
            response.total, response.digest = writer.total, str(writer.digest())
            response.started_at.CopyFrom(timestamp(status.started_at))
            response.updated_at.CopyFrom(timestamp(status.updated_at))
            return response
        if request.action not in (content_pb2.WRITE, content_pb2.COMMIT):
            raise InvalidArgument(f"unknown write action {request.action}")
        if request.offset > 0 and request.offset != writer.offset:
            raise OutOfRange(f"write @{request.offset} must occur at current offset {writer.offset}")
        if request.offset == 0 and writer.offset > 0:
            writer.truncate()
        if request.data:
            writer.write(request.data)
        response.offset = writer.offset
        if request.action == content_pb2.COMMIT:
            expected = digest_argument(request.expected) if request.expected else None
            self._commit(namespace, lease, writer, expected, max(request.total, 0), dict(request.labels))
        response.digest = str(writer.digest())
        return response

    def _commit(self, namespace: str, lease: str | None, writer: Writer, expected: Digest | None, total: int,
                labels: dict[str, str]) -> None:
        validate_labels(labels, "content")
        # Published and recorded under the database's write lock, so a collection cannot take the new
        # blob between the two.
        with self._db.transaction() as tx:
            try:
                digest = writer.commit(expected, total)
            except DataLoss as exc:
                raise FailedPrecondition(f"commit failed: {exc}") from exc
            tx.put_content(namespace, digest, writer.offset, labels)
            if lease:
                tx.add_lease_resource(namespace, lease, LEASE_CONTENT, str(digest))


def digest_argument(text: str) -> Digest:
    """A digest a client sent, refused in containerd's words."""
    try:
        return Digest.parse(text)
    except InvalidArgument:
        raise InvalidArgument(f"{text!r} failed validation") from None


def _section(offset: int, size: int, total: int) -> tuple[int, int]:
    """containerd's Read bounds: a negative offset reads from 0, size <= 0 or too large reads to the end."""
    offset = max(offset, 0)
    if offset > total:
        raise OutOfRange(f"read past object length {total} bytes")
    if size <= 0 or offset + size > total:
        size = total - offset
    return offset, size


def _info(record: ContentRecord, updated: bool = True) -> content_pb2.Info:
    info = content_pb2.Info(digest=str(record.digest), size=record.size, labels=record.labels,
                            created_at=timestamp(record.created_at))
    if updated:
        info.updated_at.CopyFrom(timestamp(record.updated_at))
    return info


def _fields(record: ContentRecord) -> dict[str, object]:
    # containerd's content adaptor: size is never matched, labels only when there are some.
    fields: dict[str, object] = {"digest": str(record.digest)}
    if record.labels:
        fields["labels"] = record.labels
    return fields


def _status(status: IngestStatus) -> content_pb2.Status:
    return content_pb2.Status(ref=status.ref, offset=status.offset, total=status.total,
                              started_at=timestamp(status.started_at), updated_at=timestamp(status.updated_at))


def _ref(status: IngestStatus) -> str:
    return status.ref
