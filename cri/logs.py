"""Structured logging: JSON lines for machines, a console renderer for people.

``configure`` sets structlog up once per process, and routes the standard
``logging`` records of libraries (grpc, httpx) through the same renderer. Every
line passes ``redact_secrets``, so a credential handed to a logger, even inside
a dict or a protobuf request, is replaced by ``REDACTED`` before it is written.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO, cast

import structlog

# protobuf ships no type information and types-protobuf is not installed.
from google.protobuf import text_format
from google.protobuf.message import Message
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

__all__ = ["REDACTED", "configure", "get_logger", "is_secret_key", "redact_secrets"]

REDACTED = "[REDACTED]"

# Words that mark a key as holding a credential, matched against the key's words
# so that "auth", "identity_token" and "registryToken" match but "author" does not.
_SECRET_WORDS = frozenset({"password", "passwd", "auth", "authorization", "secret", "credentials", "token"})
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")

# Libraries that log every HTTP request at INFO; registry URLs are not worth a line each.
_CHATTY_LIBRARIES = ("httpx", "httpcore")

_stdlib_handler: logging.Handler | None = None


def configure(level: str = "info", *, stream: TextIO | None = None) -> None:
    """Send log lines at ``level`` and above to ``stream`` (stderr by default)."""
    out = stream if stream is not None else sys.stderr
    renderer = _renderer(out)
    shared = _shared_processors()
    structlog.configure(
        processors=[*shared, *_exception_formatting(renderer), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        # Not cached, so that a later configure() (tests, a level change) reaches
        # loggers created at import time.
        cache_logger_on_first_use=False,
    )
    _route_stdlib(level, out, shared, renderer)


def get_logger(**initial_values: Any) -> FilteringBoundLogger:
    """A logger carrying ``initial_values`` plus the request's bound context."""
    return cast(FilteringBoundLogger, structlog.get_logger(**initial_values))


def is_secret_key(key: str) -> bool:
    words = _NON_WORD.split(_CAMEL_BOUNDARY.sub("_", key).lower())
    return any(word in _SECRET_WORDS or word.endswith("token") for word in words)


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: blank out every value whose key names a credential."""
    return {key: REDACTED if is_secret_key(key) else _scrub(value) for key, value in event_dict.items()}


def _scrub(value: object) -> object:
    if isinstance(value, Mapping):
        return {k: REDACTED if _is_secret(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    if isinstance(value, Message):
        return _scrubbed_text(value)
    return value


def _is_secret(key: object) -> bool:
    return isinstance(key, str) and is_secret_key(key)


def _scrubbed_text(message: Message) -> str:
    # A CRI request such as PullImageRequest carries an AuthConfig: log a copy
    # with every credential field cleared, never the original.
    copy = type(message)()
    copy.CopyFrom(message)
    _clear_secret_fields(copy)
    text: str = text_format.MessageToString(copy, as_one_line=True)
    return text


def _clear_secret_fields(message: Message) -> None:
    for field, value in message.ListFields():
        if is_secret_key(field.name):
            message.ClearField(field.name)
        elif field.message_type is not None:
            for item in _submessages(field, value):
                _clear_secret_fields(item)


def _submessages(field: Any, value: Any) -> list[Message]:
    if field.message_type.GetOptions().map_entry:
        items = list(value.values())
    elif field.is_repeated:
        items = list(value)
    else:
        items = [value]
    return [item for item in items if isinstance(item, Message)]


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]


def _renderer(stream: TextIO) -> Processor:
    if stream.isatty():
        return structlog.dev.ConsoleRenderer()
    return structlog.processors.JSONRenderer()


def _exception_formatting(renderer: Processor) -> list[Processor]:
    # The console renderer prints tracebacks itself; JSON needs them as a string field.
    if isinstance(renderer, structlog.dev.ConsoleRenderer):
        return []
    return [structlog.processors.format_exc_info]


def _route_stdlib(level: str, stream: TextIO, shared: list[Processor], renderer: Processor) -> None:
    global _stdlib_handler
    root = logging.getLogger()
    if _stdlib_handler is not None:
        root.removeHandler(_stdlib_handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_exception_formatting(renderer),
                renderer,
            ],
        )
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    _stdlib_handler = handler
