"""A field-mapping spec as a frozen value: which export field feeds each `start` parameter.

Loaded from a `--map` TOML file (or the built-in sources' TOML) by `parse_mapping`, which
returns a `MappingError` instead of raising. Pure apart from `load_mapping`'s one read.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from replayer.source.convert.normalise import TIME_UNITS, is_placeholder

# One step of a path: a key of an object, or the element of a list whose `field` is `value`
# (written `event_params[key=ga_session_id]`).
Step = str | tuple[str, str, str]
FieldPath = tuple[Step, ...]
Rule = Literal["gap", "key", "marker"]

# Transforms a [start] entry may name, by the parameters they may feed.
TRANSFORMS = ("text", "country", "locale", "iana", "offset")
ATTRIBUTE_SHAPES = ("object", "key_value_list")
# What [start] may map besides identity, location and userAttributes (docs/leanplum-api.md order).
START_FIELDS = (
    "appVersion", "systemName", "systemVersion", "browserName", "browserVersion",
    "deviceName", "deviceModel", "locale", "country", "region", "city",
    "locationAccuracyType", "timezone", "timezoneOffsetSeconds",
)
_STEP = re.compile(r"([^.\[\]]+)(?:\[([^=\]]+)=([^\]]*)\])?")


@dataclass(frozen=True, slots=True)
class Field:
    """One start parameter, the paths that may feed it (first present wins) and a transform."""

    target: str
    paths: tuple[FieldPath, ...]
    transform: str = "text"


@dataclass(frozen=True, slots=True)
class Mapping:
    """How one JSON-lines export becomes start records: a frozen, validated value."""

    name: str
    time: tuple[FieldPath, ...]
    time_unit: str
    user: tuple[FieldPath, ...]
    user_id: tuple[FieldPath, ...]
    device_id: tuple[FieldPath, ...]
    fields: tuple[Field, ...]
    rule: Rule = "gap"
    event_name: tuple[FieldPath, ...] = ()
    session_key: tuple[FieldPath, ...] = ()
    no_key: frozenset[str] = frozenset()
    markers: frozenset[str] = frozenset()
    latitude: tuple[FieldPath, ...] = ()
    longitude: tuple[FieldPath, ...] = ()
    attributes: tuple[FieldPath, ...] = ()
    attributes_shape: str = "object"
    attributes_unless: tuple[tuple[FieldPath, ...], frozenset[str]] = ((), frozenset())
    insert_id: tuple[FieldPath, ...] = ()  # events of a user with the same id count once
    insert_id_all: bool = False  # the id is every path's value (else the first present)
    processed: tuple[FieldPath, ...] = ()  # a UTC processing time: finds local event times
    processed_unit: str = "ms"
    key_start: str | None = None  # the session key is its session's start, in this unit
    anonymous_prefixes: tuple[str, ...] = ()  # a user ID so prefixed is a device's
    user_agent: tuple[FieldPath, ...] = ()  # read for browser and OS when no OS is mapped
    user_agent_data: tuple[FieldPath, ...] = ()  # client hints: their OS before the agent's
    web_when: tuple[FieldPath, ...] = ()  # [web]: an event whose field here is one of
    web_values: frozenset[str] = frozenset()  # these (any case) is a web event, whose
    web_fields: tuple[Field, ...] = ()  # fields these replace (no paths: not mapped)

    def has_user_attributes(self, obj: dict[str, Any]) -> bool:
        """Whether `obj`'s attributes are its user's: not when `userAttributes.unless` holds
        (a Segment group call's traits are the group's)."""
        paths, values = self.attributes_unless
        if not paths:
            return True
        kind = first_present(obj, paths)
        return not (isinstance(kind, str) and kind.strip().lower() in values)

    def fields_for(self, obj: dict[str, Any]) -> tuple[Field, ...]:
        """The [start] fields, with [web]'s in their place when `obj` is a web event."""
        if not self.web_when:
            return self.fields
        kind = first_present(obj, self.web_when)
        if not isinstance(kind, str) or kind.strip().lower() not in self.web_values:
            return self.fields
        web = {spec.target for spec in self.web_fields}
        return (*[spec for spec in self.fields if spec.target not in web], *self.web_fields)


@dataclass(frozen=True, slots=True)
class MappingError:
    """Why a mapping file was refused: one line for the user."""

    message: str


def parse_path(text: str) -> FieldPath | None:
    """`a.b[key=x].c` -> its steps; None when the text is not a path."""
    steps: list[Step] = []
    for part in _split(text):
        match = _STEP.fullmatch(part)
        if match is None:
            return None
        name, field, value = match.groups()
        steps.append(name if field is None else (name, field, value))
    return tuple(steps) if steps else None


def _split(text: str) -> list[str]:
    """Splits on dots outside brackets."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == "." and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def lookup(obj: Any, path: FieldPath) -> Any:
    """The value at `path` in a parsed event, or None where any step is missing."""
    for step in path:
        if isinstance(step, str):
            obj = obj.get(step) if type(obj) is dict else None
        else:
            name, field, value = step
            items = obj.get(name) if type(obj) is dict else None
            obj = None
            if type(items) is list:
                for item in items:
                    if type(item) is dict and str(item.get(field)) == value:
                        obj = item
                        break
        if obj is None:
            return None
    return obj


def first_present(obj: Any, paths: tuple[FieldPath, ...]) -> Any:
    """The value of the first of `paths` that is present in `obj`: not null, not "", not a
    vendor's placeholder such as "(not set)"."""
    for path in paths:
        value = lookup(obj, path)
        if value is not None and not is_placeholder(value):
            return value
    return None


def required_columns(mapping: Mapping) -> tuple[frozenset[str], ...]:
    """The top-level fields a table (Parquet) export must have one of, per set: the time's
    and the user's; without them no row could be an event."""
    return tuple(frozenset(path[0] if isinstance(path[0], str) else path[0][0]
                           for path in paths)
                 for paths in (mapping.time, mapping.user) if paths)


def load_mapping(path: Path) -> Mapping | MappingError:
    """A `--map` TOML file read and checked; a `MappingError` names what is wrong."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return MappingError(f"{path}: cannot read: {exc.strerror}")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return MappingError(f"{path}: not TOML: {exc}")
    return parse_mapping(document, name=path.stem)


def parse_mapping(document: dict[str, Any], *, name: str) -> Mapping | MappingError:
    """A TOML document ([event], [session], [start] tables) -> a `Mapping` or the first error."""
    unknown = set(document) - {"event", "session", "start", "web"}
    if unknown:
        return MappingError(f"unknown table(s): {', '.join(sorted(unknown))}")
    event, session, start, web = (document.get(k, {})
                                  for k in ("event", "session", "start", "web"))
    if not all(type(t) is dict for t in (event, session, start, web)):
        return MappingError("[event], [session], [start] and [web] must be tables")
    try:
        return _build(name, event, session, dict(start), dict(web))
    except _Refused as refused:
        return MappingError(str(refused))


class _Refused(ValueError):
    """Internal: unwinds `_build` to the one place that turns it into a MappingError."""


def _paths(value: Any, where: str) -> tuple[FieldPath, ...]:
    texts = [value] if type(value) is str else value
    if type(texts) is not list or not texts or not all(type(t) is str for t in texts):
        raise _Refused(f"{where}: must be a path or a list of paths")
    parsed = tuple(parse_path(text) for text in texts)
    if any(path is None for path in parsed):
        raise _Refused(f"{where}: not a path: {value!r}")
    return tuple(path for path in parsed if path is not None)


def _optional_paths(table: dict[str, Any], key: str, where: str) -> tuple[FieldPath, ...]:
    return _paths(table[key], f"{where}.{key}") if key in table else ()


def _build(name: str, event: dict[str, Any], session: dict[str, Any],
           start: dict[str, Any], web: dict[str, Any]) -> Mapping:
    time = event.get("time")
    if type(time) is not dict or "path" not in time:
        raise _Refused('event.time: required, e.g. { path = "ts", unit = "ms" }')
    unit = time.get("unit", "auto")
    if unit not in TIME_UNITS:
        raise _Refused(f"event.time.unit: one of {', '.join(TIME_UNITS)}, got {unit!r}")
    rule = session.get("rule", "gap")
    if rule not in ("gap", "key", "marker"):
        raise _Refused(f"session.rule: gap, key or marker, got {rule!r}")
    if rule == "key" and "key" not in session:
        raise _Refused('session.key: required with rule = "key"')
    if rule == "marker" and not ("markers" in session and "name" in event):
        raise _Refused('session.markers and event.name: required with rule = "marker"')
    user_id = _identity(start.pop("userId", None), "start.userId")
    device_id = _identity(start.pop("deviceId", None), "start.deviceId")
    if not user_id and not device_id:
        raise _Refused("start: userId or deviceId must be mapped")
    latitude, longitude = _location(start.pop("location", None))
    user_agent = _identity(start.pop("userAgent", None), "start.userAgent")
    user_agent_data = _identity(start.pop("userAgentData", None), "start.userAgentData")
    web_when, web_values = _web_when(web.pop("when", None), bool(web))
    attributes, shape, attributes_unless = _attributes(start.pop("userAttributes", None))
    insert_id, insert_id_all = _insert_id(event.get("id"))
    processed, processed_unit = _processed(event.get("processed"))
    anonymous = event.get("anonymous_prefix", [])
    if type(anonymous) is not list or not all(type(p) is str and p for p in anonymous):
        raise _Refused('event.anonymous_prefix: a list of prefixes, e.g. ["$device:"]')
    key_start = session.get("key_start")
    if key_start is not None and (rule != "key" or key_start not in TIME_UNITS):
        raise _Refused(f"session.key_start: with rule = \"key\", one of {', '.join(TIME_UNITS)}")
    return Mapping(
        name=name,
        time=_paths(time["path"], "event.time.path"),
        time_unit=unit,
        user=_optional_paths(event, "user", "event") or user_id or device_id,
        user_id=user_id,
        device_id=device_id,
        fields=tuple(_field(target, spec) for target, spec in start.items()),
        rule=rule,
        event_name=_optional_paths(event, "name", "event"),
        session_key=_optional_paths(session, "key", "session"),
        no_key=frozenset(str(v) for v in session.get("no_key", ())),
        markers=frozenset(str(v) for v in session.get("markers", ())),
        latitude=latitude,
        longitude=longitude,
        attributes=attributes,
        attributes_shape=shape,
        attributes_unless=attributes_unless,
        insert_id=insert_id,
        insert_id_all=insert_id_all,
        processed=processed,
        processed_unit=processed_unit,
        key_start=key_start,
        anonymous_prefixes=tuple(anonymous),
        user_agent=user_agent,
        user_agent_data=user_agent_data,
        web_when=web_when,
        web_values=web_values,
        web_fields=tuple(_field(target, spec, where="web") for target, spec in web.items()),
    )


def _web_when(spec: Any, has_fields: bool) -> tuple[tuple[FieldPath, ...], frozenset[str]]:
    """[web] when = { path = "PATH", values = ["Web", ...] }: which events are web events."""
    if spec is None:
        if has_fields:
            raise _Refused('web.when: required, e.g. { path = "platform", values = ["Web"] }')
        return (), frozenset()
    return _condition(spec, "web.when", '{ path = "PATH", values = ["Web", ...] }')


def _condition(spec: Any, where: str,
               example: str) -> tuple[tuple[FieldPath, ...], frozenset[str]]:
    """{ path = "PATH", values = [...] }: events whose field there is one of the values (in
    any case)."""
    values = spec.get("values") if type(spec) is dict else None
    if type(values) is not list or not values or not all(type(v) is str for v in values):
        raise _Refused(f"{where}: {example}")
    return _paths(spec.get("path"), f"{where}.path"), frozenset(v.lower() for v in values)


def _processed(spec: Any) -> tuple[tuple[FieldPath, ...], str]:
    """event.processed: { path = "PATH", unit = "ms" }, a UTC processing time."""
    if spec is None:
        return (), "ms"
    if type(spec) is not dict or "path" not in spec:
        raise _Refused('event.processed: { path = "PATH", unit = "ms" }')
    unit = spec.get("unit", "auto")
    if unit not in TIME_UNITS:
        raise _Refused(f"event.processed.unit: one of {', '.join(TIME_UNITS)}, got {unit!r}")
    return _paths(spec["path"], "event.processed.path"), unit


def _insert_id(spec: Any) -> tuple[tuple[FieldPath, ...], bool]:
    """event.id: a path or list of paths (the first present is the id), or { all = [...] }
    (the id is all of them, each required)."""
    if spec is None:
        return (), False
    if type(spec) is dict:
        if set(spec) != {"all"}:
            raise _Refused('event.id: a path, a list of paths, or { all = ["PATH", ...] }')
        return _paths(spec["all"], "event.id.all"), True
    return _paths(spec, "event.id"), False


def _identity(spec: Any, where: str) -> tuple[FieldPath, ...]:
    return () if spec is None else _paths(spec, where)


def _location(spec: Any) -> tuple[tuple[FieldPath, ...], tuple[FieldPath, ...]]:
    if spec is None:
        return (), ()
    if type(spec) is not dict or set(spec) != {"lat", "lon"}:
        raise _Refused('start.location: { lat = "PATH", lon = "PATH" }')
    return _paths(spec["lat"], "start.location.lat"), _paths(spec["lon"], "start.location.lon")


def _attributes(spec: Any) -> tuple[tuple[FieldPath, ...], str,
                                     tuple[tuple[FieldPath, ...], frozenset[str]]]:
    """start.userAttributes: a path, or { path, shape, unless = { path, values } }."""
    if spec is None:
        return (), "object", ((), frozenset())
    if type(spec) is not dict:
        spec = {"path": spec}
    unknown = set(spec) - {"path", "shape", "unless"}
    if unknown:
        raise _Refused(f"start.userAttributes: unknown key(s): {', '.join(sorted(unknown))}")
    shape = spec.get("shape", "object")
    if shape not in ATTRIBUTE_SHAPES:
        raise _Refused(f"start.userAttributes.shape: object or key_value_list, got {shape!r}")
    unless = ((), frozenset[str]()) if "unless" not in spec else _condition(
        spec["unless"], "start.userAttributes.unless",
        '{ path = "type", values = ["group"] }')
    return _paths(spec.get("path"), "start.userAttributes.path"), shape, unless


def _field(target: str, spec: Any, *, where: str = "start") -> Field:
    """One parameter's spec; in [web], `false` leaves the parameter out of web events."""
    if target not in START_FIELDS:
        raise _Refused(f"{where}.{target}: not a start parameter this mapping can feed")
    if where == "web" and spec is False:
        return Field(target, ())
    if type(spec) is not dict:
        spec = {"path": spec}
    transform = spec.get("transform", "text")
    if transform not in TRANSFORMS:
        raise _Refused(f"{where}.{target}.transform: one of {', '.join(TRANSFORMS)}")
    if (transform == "iana") != (target == "timezone" and transform == "iana"):
        raise _Refused(f"{where}.{target}: transform iana feeds only timezone")
    return Field(target, _paths(spec.get("path"), f"{where}.{target}.path"), transform)
