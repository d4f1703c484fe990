"""One gRPC interceptor for logging, metrics and error translation of every RPC.

Handlers stay thin: they return a response (or yield responses) and raise
``errdefs`` errors. For each call ``Interceptor``:

- runs the handler in a fresh ``contextvars.Context`` with ``method`` and
  ``rpc_id`` bound, so whatever the handler logs through structlog carries them;
- turns an ``errdefs`` error into its status code (``cri.errors``) and aborts
  with the error's message; any other exception becomes INTERNAL with a generic
  message, its traceback going to the log only;
- lets a status the handler set itself through, such as the UNIMPLEMENTED of
  the generated servicer base classes;
- writes one log line (``event="rpc"``, ``method``, ``code``, ``duration_ms``,
  ``error`` when failing, the traceback when INTERNAL) and updates the gRPC metrics.

Requests are never logged, so credentials in them (PullImageRequest.auth) are not either.
Unary and streaming handlers are both covered; a method no servicer knows is
answered UNIMPLEMENTED the same way.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc
import structlog

from cri import errors
from cri.metrics import Metrics
from errdefs import CrishimError, Unimplemented

__all__ = ["Interceptor"]

Behavior = Callable[[Any, Any], Any]

_END = object()

# Failures that mean a bug or corruption on our side.
_ERROR_CODES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS})
# Failures that are part of normal operation: kubelet asks for optional RPCs and
# for objects that may be gone, and clients hang up on streams.
_QUIET_CODES = frozenset(
    {grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.CANCELLED}
)


class Interceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        method: str = handler_call_details.method
        handler = continuation(handler_call_details)
        if handler is None:
            return grpc.stream_stream_rpc_method_handler(self._streaming(method, _unknown_method(method)))
        return self._wrap(method, handler)

    def _wrap(self, method: str, handler: Any) -> Any:
        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            behavior = self._unary(method, handler.unary_unary)
            return grpc.unary_unary_rpc_method_handler(behavior, **serializers)
        if handler.stream_unary:
            behavior = self._unary(method, handler.stream_unary)
            return grpc.stream_unary_rpc_method_handler(behavior, **serializers)
        if handler.unary_stream:
            behavior = self._streaming(method, handler.unary_stream)
            return grpc.unary_stream_rpc_method_handler(behavior, **serializers)
        behavior = self._streaming(method, handler.stream_stream)
        return grpc.stream_stream_rpc_method_handler(behavior, **serializers)

    def _unary(self, method: str, behavior: Behavior) -> Behavior:
        def instrumented(request: Any, context: Any) -> Any:
            call = _Call(method, self._metrics, context)
            response = call.invoke(behavior, request, context)
            call.finish()
            return response

        return instrumented

    def _streaming(self, method: str, behavior: Behavior) -> Callable[[Any, Any], Iterator[Any]]:
        def instrumented(request: Any, context: Any) -> Iterator[Any]:
            call = _Call(method, self._metrics, context)
            responses = call.invoke(behavior, request, context)
            try:
                while (response := call.invoke(next, responses, _END)) is not _END:
                    yield response
                call.finish()
            finally:
                # Reached without finish() when the client went away mid-stream.
                call.abandon(responses)

        return instrumented


def _unknown_method(method: str) -> Behavior:
    def unknown(request: Any, context: Any) -> Any:
        raise Unimplemented(f"unknown method {method}")

    return unknown


class _Call:
    """The life of one RPC: its context, its clock, its log line and metrics."""

    def __init__(self, method: str, metrics: Metrics, context: Any) -> None:
        self._method = method
        self._metrics = metrics
        self._context = context
        self._start = time.perf_counter()
        self._finished = False
        # A fresh Context per RPC: nothing bound here outlives the call or leaks
        # into the next RPC served by the same pool thread.
        self._scope = contextvars.Context()
        self._scope.run(structlog.contextvars.bind_contextvars, method=method, rpc_id=secrets.token_hex(6))

    def invoke(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return self._scope.run(fn, *args)
        except Exception as exc:
            self._fail(exc)

    def finish(self) -> None:
        code = self._context.code() or grpc.StatusCode.OK
        self._record(code, _details(self._context) if code is not grpc.StatusCode.OK else "")

    def abandon(self, responses: Any) -> None:
        if self._finished:
            return
        self._record(grpc.StatusCode.CANCELLED, "client went away")
        close = getattr(responses, "close", None)
        if close is not None:
            self._scope.run(close)

    def _fail(self, exc: Exception) -> NoReturn:
        preset = self._context.code()
        if preset not in (None, grpc.StatusCode.OK) and not isinstance(exc, CrishimError):
            # The handler chose its status (context.abort, or set_code before
            # raising as the generated base classes do): keep it.
            code, message = preset, _details(self._context)
        else:
            code, message = errors.status_of(exc)
        # A bug: the traceback goes in the RPC's log line, never to the client.
        self._record(code, message, exc if code is grpc.StatusCode.INTERNAL else None)
        self._context.abort(code, message)
        raise AssertionError("unreachable: context.abort raises")  # for readers and type checkers

    def _record(self, code: Any, message: str, exc: Exception | None = None) -> None:
        self._finished = True
        seconds = time.perf_counter() - self._start
        self._metrics.observe_rpc(self._method, code.name, seconds)
        fields: dict[str, Any] = {"code": code.name, "duration_ms": round(seconds * 1000, 3)}
        if code is not grpc.StatusCode.OK:
            fields["error"] = message
        if exc is not None:
            fields["exc_info"] = exc
        log = structlog.get_logger()
        self._scope.run(log.log, _level(self._method, code), "rpc", **fields)


def _details(context: Any) -> str:
    details = context.details()
    if isinstance(details, bytes):
        return details.decode("utf-8", "replace")
    return details or ""


def _level(method: str, code: Any) -> int:
    if code in _ERROR_CODES:
        return logging.ERROR
    # A missing object is routine for a status query, not for a pull or a create that needed it.
    quiet = code in _QUIET_CODES and (code is not grpc.StatusCode.NOT_FOUND or _is_polling(method))
    if code is not grpc.StatusCode.OK and not quiet:
        return logging.WARNING
    return logging.DEBUG if _is_polling(method) else logging.INFO


# Reads that change nothing: kubelet polls some every few seconds, and one `ctr image ls` makes dozens.
_READS = frozenset({"Version", "ImageFsInfo", "Info", "Read", "Get", "Stat", "Mounts", "Usage", "Plugins"})


def _is_polling(method: str) -> bool:
    name = method.rpartition("/")[2]
    return name in _READS or name.startswith(("List", "Stream")) or name.endswith(("Status", "Stats"))
