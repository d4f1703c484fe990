"""The configuration reference, read from ``cri.config`` itself: every key, its type, default and meaning.

Keys and defaults come from the config dataclasses' fields, meanings from the docstring written under each
field (read from the module's source, as Python keeps no attribute docstrings). ``settings()`` lists them in
file order; ``toml()`` renders the defaults as a commented config file (deploy/config.toml) that loads back
to ``Config()``, ``markdown()`` as docs/configuration.md. script/genconfig.py writes both.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cri import config

__all__ = ["Setting", "markdown", "settings", "toml"]

_WIDTH = 116
_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
# Shown for a table keyed by names the operator chooses; the defaults of such a table are its built-in entries.
_PLACEHOLDERS = {"registry.auths": "HOST", "runtimes": "NAME"}
# An example entry for such a table that is empty by default.
_EXAMPLES = {"registry.auths": '"registry.example.com"'}


@dataclass(frozen=True, slots=True)
class Setting:
    """One key: ``key`` is its dotted path with ``NAME``-style placeholders for tables keyed by name."""

    key: str
    type: str
    default: object
    doc: str
    table: bool = False  # a table of settings rather than a value


def settings() -> list[Setting]:
    """Every key of the configuration, tables before their keys, in the order of the dataclasses."""
    return list(_walk(config.Config, ""))


def _walk(cls: type, prefix: str) -> Iterator[Setting]:
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if f.name not in docs:
            raise KeyError(f"{cls.__qualname__}.{f.name} ({key}) has no docstring under it in cri/config.py, "
                           "which the configuration reference is written from")
        hint = hints[f.name]
        default: Any = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if _is_dataclass(hint):
            yield Setting(key, "table", None, docs[f.name], table=True)
            yield from _walk(hint, f"{key}.")
        elif typing.get_origin(hint) is Mapping:
            _, item = typing.get_args(hint)
            placeholder = f"{key}.{_PLACEHOLDERS[key]}"
            yield Setting(key, f"tables by {_PLACEHOLDERS[key].lower()}", dict(default), docs[f.name], table=True)
            yield from _walk(item, f"{placeholder}.")
        else:
            yield Setting(key, _TYPE_NAMES[hint], default, docs[f.name])


def _is_dataclass(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    """The string literal under each field of ``cls``."""
    (node,) = ast.parse(textwrap.dedent(inspect.getsource(cls))).body
    assert isinstance(node, ast.ClassDef)
    docs = {}
    for field_node, following in zip(node.body, node.body[1:], strict=False):
        if (isinstance(field_node, ast.AnnAssign) and isinstance(field_node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[field_node.target.id] = " ".join(following.value.value.split())
    return docs


# --- deploy/config.toml ------------------------------------------------------------------------------------


def toml() -> str:
    """The defaults as a config file, every key under a comment saying what it does."""
    lines = [
        "# /etc/crishim/config.toml: every key with its default; command-line flags override them.",
        "# Written by script/genconfig.py from cri/config.py (docs/configuration.md has the same as a table).",
    ]
    lines += _toml_table(config.Config(), "", commented=False)
    return "\n".join(lines).rstrip("\n") + "\n"


def _toml_table(value: Any, prefix: str, *, commented: bool) -> list[str]:
    """The keys of the dataclass ``value`` (values first: TOML puts a table's keys before its subtables)."""
    docs = _field_docs(value.__class__)
    lines: list[str] = []
    hash_ = "# " if commented else ""
    subtables = []
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if dataclasses.is_dataclass(item) or isinstance(item, Mapping):
            subtables.append(f)
            continue
        lines += _comment(docs[f.name]) + [f"{hash_}{f.name} = {_toml_value(item)}"]
    for f in subtables:
        item = getattr(value, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(item):
            lines += ["", *_comment(docs[f.name]), f"{hash_}[{key}]"]
            lines += _toml_table(item, f"{key}.", commented=commented)
            continue
        lines += ["", *_comment(docs[f.name])]
        entries = dict(item)
        if not entries:  # an example, commented out, so that the defaults stay what they are
            example = _EXAMPLES[key]
            item_type = typing.get_args(typing.get_type_hints(type(value))[f.name])[1]
            lines += [f"# [{key}.{example}]", *_toml_table(item_type(), f"{key}.{example}.", commented=True)]
        for index, (name, entry) in enumerate(entries.items()):
            entry_lines = _toml_table(entry, f"{key}.{name}.", commented=commented)
            if index:  # the first entry says what each key does
                entry_lines = [line for line in entry_lines if not line.startswith("# ")]
                lines.append("")
            lines += [f"{hash_}[{key}.{name}]", *entry_lines]
    return lines


def _comment(doc: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(doc, _WIDTH - 2)]


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))  # TOML basic strings take JSON's escapes


# --- docs/configuration.md ---------------------------------------------------------------------------------


def markdown() -> str:
    """The reference as one table per TOML table."""
    out = [
        "# Configuration reference",
        "",
        "crishim reads `/etc/crishim/config.toml` (or the file `crishim serve --config` names). Most top-level",
        "keys can also be given as flags of `crishim serve` (`--metrics-address` for `metrics_address`; see",
        "`crishim serve --help`), which win over the file. An unknown key or a value of the wrong type stops the",
        "daemon with a message naming the key. `deploy/config.toml` is this reference as a file, every key at its",
        "default.",
        "",
        "Written by `script/genconfig.py` from `cri/config.py`; a test fails when it differs.",
    ]
    sections: dict[str, list[Setting]] = {"": []}
    intros: dict[str, Setting] = {}
    for setting in settings():
        if setting.table:
            table = setting.key + (f".{_PLACEHOLDERS[setting.key]}" if setting.key in _PLACEHOLDERS else "")
            sections[table] = []
            intros[table] = setting
        else:
            sections[setting.key.rpartition(".")[0]].append(setting)
    for table, keys in sections.items():
        if not keys:
            continue
        out += ["", f"## `[{table}]`" if table else "## Top level", ""]
        if table in intros:
            out += [_intro(intros[table]), ""]
        out += ["| Key | Type | Default | Meaning |", "|---|---|---|---|"]
        out += [f"| `{s.key.rpartition('.')[2]}` | {s.type} | `{_toml_value(s.default)}` | {_cell(s.doc)} |"
                for s in keys]
    return "\n".join(out) + "\n"


def _intro(table: Setting) -> str:
    if isinstance(table.default, dict) and table.default:
        return f"{table.doc} Built in: {', '.join(f'`{name}`' for name in table.default)}."
    return table.doc


def _cell(text: str) -> str:
    # Table cells are Markdown: a pipe ends the cell, <state> would be read as HTML, *.conf as emphasis.
    return text.replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")
