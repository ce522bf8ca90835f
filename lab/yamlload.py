"""YAML loading that remembers the line of every key and value, for `file:line` errors."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.errors import ConfigError

Path_ = tuple[Any, ...]


@dataclass
class Document:
    """A parsed YAML document: plain Python data plus the line of each node, keyed by path."""

    source: str
    data: Any
    value_lines: dict[Path_, int] = field(default_factory=dict)
    key_lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int:
        """Line (1-based) of the key at `path`, else of its value, else of its nearest ancestor."""
        for end in range(len(path), -1, -1):
            prefix = tuple(path[:end])
            if prefix in self.key_lines:
                return self.key_lines[prefix]
            if prefix in self.value_lines:
                return self.value_lines[prefix]
        return 1

    def where(self, path: Path_ = ()) -> str:
        """`source:line` for the node at `path`."""
        return f"{self.source}:{self.line_of(path)}"

    def data_path(self, loc: Path_) -> Path_:
        """Map a validator's location onto the data: keep the parts that name real keys or indices.

        Validator locations also hold union tags and the fields of shorthand forms
        (`cooldown: 240` is validated as `cooldown.seconds`); those are skipped, so the
        error points at the deepest node that exists in the file.
        """
        node, out = self.data, []
        for part in loc:
            if isinstance(node, dict) and part in node:
                node = node[part]
                out.append(part)
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
                out.append(part)
        return tuple(out)


_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")}


class _Loader(yaml.SafeLoader):
    """Safe loader (no Python object tags); used only to compose and to build scalars."""


def read_text(path: str | Path) -> str:
    """Read a UTF-8 input file, turning OS and decoding errors into one ConfigError line."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", where=str(path), hint="check the path") from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a file", where=str(path), hint="name a .yaml file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", where=str(path),
                          hint="save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", where=str(path)) from None


def parse_yaml(text: str, source: str) -> Document:
    """Parse one YAML document from `text`; every syntax problem becomes a ConfigError at its line."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError("file is empty", where=f"{source}:1",
                              hint="write a YAML mapping, e.g. 'name: ...'")
        doc = Document(source=source, data=None)
        doc.data = _build(loader, root, (), doc, set())
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = (exc.problem or "invalid YAML").strip()
        if exc.context and exc.problem_mark is not None:
            problem = f"{problem} ({exc.context.strip()})"
        hint = "check the indentation and quoting on this line and the one before"
        if "\\t" in problem:
            hint = "indent with spaces, not tabs"
        elif "expected a single document" in problem:
            problem, hint = "more than one YAML document in the file", "remove the extra '---'"
        raise ConfigError(f"YAML syntax error: {problem}", where=f"{source}:{line}", hint=hint) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", where=f"{source}:1") from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> tuple[str, Document]:
    """Read and parse a YAML file; returns its text and the line-aware document."""
    text = read_text(path)
    return text, parse_yaml(text, str(path))


def _build(loader: _Loader, node: yaml.Node, path: Path_, doc: Document, active: set[int]) -> Any:
    """Construct plain data from a node, recording lines and refusing duplicate keys."""
    line = node.start_mark.line + 1
    doc.value_lines[path] = line
    if node.tag not in _PLAIN_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise ConfigError(f"unsupported YAML tag '{tag}'", where=f"{doc.source}:{line}",
                          hint="remove the tag: lab files hold plain data only")
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_object(node, deep=True)
    if id(node) in active:
        raise ConfigError("recursive YAML alias", where=f"{doc.source}:{line}",
                          hint="an anchor cannot contain an alias to itself")
    active = active | {id(node)}
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, path + (i,), doc, active) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves '<<' merge keys
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("a key must be a plain word, not a list or mapping",
                                  where=f"{doc.source}:{key_line}")
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key).lower() if isinstance(key, bool) else str(key)
            if key in result:
                first = doc.key_lines[path + (key,)]
                raise ConfigError(f"duplicate key '{key}'", where=f"{doc.source}:{key_line}",
                                  hint=f"it is already set at line {first}")
            doc.key_lines[path + (key,)] = key_line
            result[key] = _build(loader, value_node, path + (key,), doc, active)
        return result
    raise ConfigError("unsupported YAML node", where=f"{doc.source}:{line}")  # pragma: no cover


# --- validation: pydantic errors -> one `file:line: what (hint)` ConfigError -------------------

_PHRASES = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "model_type": "must be a mapping of keys",
    "model_attributes_type": "must be a mapping of keys",
    "dict_type": "must be a mapping of keys",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "literal_error": "must be one of {expected}",
}


def custom_error(what: str, hint: str | None = None, at: Path_ = ()) -> Exception:
    """An error for a model validator: `what` and `hint` verbatim, `at` a path below the field."""
    from pydantic_core import PydanticCustomError

    return PydanticCustomError("lab", what.replace("{", "(").replace("}", ")"), {"hint": hint, "at": tuple(at)})


def show(value: Any) -> str:
    """A value as a person would write it in YAML, short."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    return str(value)


def dotted(path: Path_) -> str:
    """`('phases', 1, 'steps', 0)` -> `phases[1].steps[0]`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate(model: type, doc: Document, kind: str) -> Any:
    """Validate `doc.data` as `model`; the first problem in file order becomes a ConfigError."""
    from pydantic import ValidationError

    if not isinstance(doc.data, dict):
        raise ConfigError(f"the {kind} must be a mapping of keys, got {show(doc.data)}", where=doc.where(),
                          hint="start with 'name: ...'")
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        # One line per file: the first problem in the file, but a missing key only when nothing else
        # is wrong (a misspelt key is both unknown and missing, and the unknown one says more).
        problems = [(err["type"] == "missing", _describe(err, model, doc, kind)) for err in exc.errors()]
        _, (what, path, hint) = min(problems, key=lambda p: (p[0], doc.line_of(p[1][1])))
        raise ConfigError(what, where=doc.where(path), hint=hint) from None


def _describe(err: dict, model: type, doc: Document, kind: str) -> tuple[str, Path_, str | None]:
    """Turn one pydantic error into (what, data path, hint)."""
    loc, etype, ctx = tuple(err["loc"]), err["type"], err.get("ctx") or {}
    if etype == "lab":
        return err["msg"], doc.data_path(loc + tuple(ctx.get("at", ()))), ctx.get("hint")
    field_loc = loc
    while field_loc and isinstance(field_loc[-1], int):  # an item of a list: describe the list's field
        field_loc = field_loc[:-1]
    name = field_loc[-1] if field_loc else None
    owner = _owner(model, field_loc[:-1])
    if etype in ("missing", "extra_forbidden"):
        parent = doc.data_path(loc[:-1])
        holder = dotted(parent) or f"the {kind}"
        if etype == "missing":
            return f"{holder} has no '{name}'", parent, _describe_field(owner, name, add=True)
        allowed = sorted(f for f in getattr(owner, "model_fields", {}) if f != "kind")
        return (f"unknown key '{name}' in {holder}", parent + (name,),
                did_you_mean(str(name), allowed, "expected one of"))
    path = doc.data_path(loc)
    if etype in _PHRASES:
        phrase = _PHRASES[etype].format(**ctx)
    else:  # pydantic's own sentence, already formatted
        phrase = err["msg"][:1].lower() + err["msg"][1:]
    got = err.get("input")
    if etype == "too_short" and ctx.get("min_length") == 1:
        return f"{dotted(path) or 'the ' + kind} must not be empty", path, _describe_field(owner, name)
    if etype == "literal_error":  # the choices are in the message already
        return f"{dotted(path) or 'the ' + kind} {phrase}, got {show(got)}", path, None
    shown = str(len(got)) if etype in ("too_short", "too_long") and isinstance(got, list | dict) else show(got)
    return f"{dotted(path) or 'the ' + kind} {phrase}, got {shown}", path, _describe_field(owner, name)


def _owner(model: type, loc: Path_) -> type | None:
    """The model class that holds the field named right after `loc` (tags pick union members)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(current, dict):  # members of a tagged union, by tag
            current = current.get(part)
            if current is None:
                return None
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None
        current = _unwrap(fields[part].annotation)
        if isinstance(current, tuple):
            current = {m.model_fields["kind"].default: m for m in current
                       if "kind" in getattr(m, "model_fields", {})}
    return current if hasattr(current, "model_fields") else None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional / list / Annotated down to a model class, or a tuple of union members."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated or origin in (list, tuple, set, frozenset):
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return tuple(members)
            annotation = members[0]
        else:
            return annotation


def _describe_field(owner: type | None, name: Any, add: bool = False) -> str | None:
    """The field's description as a hint (`add` phrases it as something to write)."""
    fields = getattr(owner, "model_fields", {})
    info = fields.get(name) if isinstance(name, str) else None
    if info is None or not info.description:
        return None
    return f"add '{name}:' ({info.description})" if add else f"{name}: {info.description}"


def did_you_mean(word: str, choices: list[str], intro: str) -> str:
    """`did you mean 'x'?` when a choice is close, else the list of choices."""
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"{intro}: {', '.join(choices)}"
