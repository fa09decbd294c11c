"""Applies a `Mapping`: a parsed export line -> an `Event`, and a closed session -> a record.

Pure: every value is normalised here (normalise.py) or counted as unmapped in the tally;
nothing raises for bad input, a line that cannot be an event is a `Refusal`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from replayer.limits import MAX_FUTURE_S, MAX_ID_CHARS
from replayer.records import redact_text
from replayer.source.convert.agents import agent_fields
from replayer.source.convert.mapping import Field, Mapping, first_present
from replayer.source.convert.normalise import (
    attribute_name,
    attribute_value,
    coordinate,
    country_code,
    locale_tag,
    offset_seconds,
    os_version,
    system_name,
    text_value,
    unix_seconds,
    zone_at,
)
from replayer.source.convert.sessions import Event, OpenSession
from replayer.source.fields import CHECKS, Problem
from replayer.source.redact import may_name_secret, nested_secret_problems

_EXAMPLES = 5  # distinct unmapped values kept per field, for the summary
_KV_VALUES = ("string_value", "int_value", "float_value", "double_value")
# Vendors' bookkeeping, not facts about a user: they would change every session.
BOOKKEEPING = ("ga_session_*", "first_open_time", "engaged_session_event", "session_engaged",
               "mp_*", "$mp_*", "$insert_id", "insert_id", "$schema")
_MAX_NESTING = 4  # levels of nested objects flattened into `a.b.c` attribute names


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a line is no event: a reject reason and a message for the rejects file."""

    reason: str
    message: str


@dataclass(slots=True)
class FieldTally:
    """Fields present in a session's first event that could not be mapped, renames, and
    attributes dropped because they name a secret or configuration field."""

    unmapped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # name (masked) -> sessions

    def miss(self, target: str, value: Any) -> None:
        """Counts a value of `target` that could not be normalised, keeping a few examples."""
        self.unmapped[target] = self.unmapped.get(target, 0) + 1
        shown = self.examples.setdefault(target, [])
        text = redact_text(str(value)[:60])
        if len(shown) < _EXAMPLES and text not in shown:
            shown.append(text)

    def drop(self, name: str) -> None:
        """Counts an attribute left out because validation would refuse its session."""
        shown = redact_text(name[:60])
        self.dropped[shown] = self.dropped.get(shown, 0) + 1

    def merge(self, later: FieldTally) -> None:
        """Adds what `later` counted, as if its sessions had been tallied here after ours."""
        for target, count in later.unmapped.items():
            self.unmapped[target] = self.unmapped.get(target, 0) + count
        for target, texts in later.examples.items():
            shown = self.examples.setdefault(target, [])
            for text in texts:
                if len(shown) < _EXAMPLES and text not in shown:
                    shown.append(text)
        for name, valid in later.renamed.items():
            self.renamed.setdefault(name, valid)
        for name, count in later.dropped.items():
            self.dropped[name] = self.dropped.get(name, 0) + count


def read_event(mapping: Mapping, obj: Any, *, now_s: float, zone: ZoneInfo | None = None,
               anonymous_as_user: bool = False) -> Event | Refusal:
    """A parsed line as an `Event` (who, when, which session), or why it cannot be one;
    with `zone`, times without an offset are that zone's wall clock. An anonymous user ID
    is the device's ID, unless `anonymous_as_user`."""
    if type(obj) is not dict:
        return Refusal("not_an_object", "a JSON value that is not an object")
    user = text_value(first_present(obj, mapping.user))
    user_id, device_id = identity(mapping, obj, anonymous_as_user=anonymous_as_user)
    if user is None or (user_id is None and device_id is None):
        return Refusal("no_user", "no user: none of the user and device ID fields is set")
    for value in (user_id, device_id):
        if value is not None and len(value) > MAX_ID_CHARS:
            return Refusal("id_too_long", f"an ID of {len(value)} characters (at most {MAX_ID_CHARS})")
    raw_time = first_present(obj, mapping.time)
    if raw_time is None:
        return Refusal("no_time", "no time: the time field is missing")
    time_s = unix_seconds(raw_time, mapping.time_unit, zone)
    if time_s is None:
        return Refusal("invalid_time", f"time {str(raw_time)[:40]!r} is not a time after 1970 "
                                       f"(unit {mapping.time_unit})")
    if time_s > now_s + MAX_FUTURE_S:
        return Refusal("invalid_time", f"time {str(raw_time)[:40]!r} is more than a day ahead")
    key = _session_key(mapping, obj)
    return Event(time_s, user, key, _is_marker(mapping, obj),
                 user_id, device_id, _attributes(mapping, obj), obj, insert_id(mapping, obj),
                 processed_s=_processed_s(mapping, obj),
                 key_start_s=None if key is None or mapping.key_start is None
                 else unix_seconds(key, mapping.key_start))


def _processed_s(mapping: Mapping, obj: dict[str, Any]) -> float | None:
    """The event's UTC processing time (Mixpanel's mp_processing_time_ms), if mapped."""
    if not mapping.processed:
        return None
    return unix_seconds(first_present(obj, mapping.processed), mapping.processed_unit)


def identity(mapping: Mapping, obj: dict[str, Any], *,
             anonymous_as_user: bool = False) -> tuple[str | None, str | None]:
    """The event's user and device IDs. A user ID that is anonymous (it has one of the
    mapping's anonymous prefixes, or it is the device ID) is no user's: it becomes the
    device ID when there is none, prefix removed (`$device:abc` -> `abc`)."""
    user_id = text_value(first_present(obj, mapping.user_id))
    device_id = text_value(first_present(obj, mapping.device_id))
    if not anonymous_as_user and user_id is not None and (
            user_id == device_id or user_id.startswith(mapping.anonymous_prefixes)):
        device_id = device_id or user_id
        user_id = None
    if device_id is not None and device_id.startswith(mapping.anonymous_prefixes):
        device_id = _unprefixed(device_id, mapping.anonymous_prefixes)
    return user_id, device_id


def _unprefixed(text: str, prefixes: tuple[str, ...]) -> str | None:
    for prefix in prefixes:
        if text.startswith(prefix):
            return text[len(prefix):] or None
    return text


def insert_id(mapping: Mapping, obj: dict[str, Any]) -> str | None:
    """The event's id for dropping duplicates (event.id), or None: it is never a copy."""
    if not mapping.insert_id:
        return None
    if not mapping.insert_id_all:
        return text_value(first_present(obj, mapping.insert_id))
    parts = [text_value(first_present(obj, (path,))) for path in mapping.insert_id]
    if any(part is None for part in parts):
        return None
    return orjson.dumps(parts).decode()


def _session_key(mapping: Mapping, obj: dict[str, Any]) -> str | None:
    if mapping.rule != "key":
        return None
    key = text_value(first_present(obj, mapping.session_key))
    return None if key is None or key in mapping.no_key else key


def _is_marker(mapping: Mapping, obj: dict[str, Any]) -> bool:
    if mapping.rule != "marker":
        return False
    return text_value(first_present(obj, mapping.event_name)) in mapping.markers


def _attributes(mapping: Mapping, obj: dict[str, Any]) -> dict[str, Any] | None:
    if not mapping.attributes or not mapping.has_user_attributes(obj):
        return None
    raw = first_present(obj, mapping.attributes)
    if mapping.attributes_shape == "object":
        return raw if type(raw) is dict and raw else None
    if type(raw) is not list:
        return None
    out: dict[str, Any] = {}
    for item in raw:
        if type(item) is dict and type(item.get("key")) is str:
            out[item["key"]] = _kv_value(item.get("value"))
    return out or None


def _kv_value(value: Any) -> Any:
    """GA4's {string_value | int_value | float_value | double_value}: the one that is set."""
    if type(value) is not dict:
        return value
    for name in _KV_VALUES:
        item = value.get(name)
        if item is not None:
            if name == "int_value" and type(item) is str:
                return int(item) if item.lstrip("-").isdigit() else item
            return item
    return None


def start_record(mapping: Mapping, session: OpenSession, tally: FieldTally) -> dict[str, Any]:
    """The start record of a closed session: its first event's fields at its start time."""
    record: dict[str, Any] = {}
    if session.user_id is not None:
        record["userId"] = session.user_id
    if session.device_id is not None:
        record["deviceId"] = session.device_id
    start_s = round(session.first_s, 3)
    record["time"] = int(start_s) if start_s.is_integer() else start_s
    for spec in mapping.fields_for(session.obj):
        if spec.target in record:
            continue
        value = first_present(session.obj, spec.paths)
        if value is None:
            continue
        _put(record, spec, value, session.first_s, tally)
    _put_agent(record, mapping, session.obj)
    _put_location(record, mapping, session.obj, tally)
    attributes = _valid_attributes(session.attributes, tally)
    if attributes:
        record["userAttributes"] = attributes
    return record


def _put(record: dict[str, Any], spec: Field, value: Any, time_s: float,
         tally: FieldTally) -> None:
    transform = spec.transform
    if transform == "iana":
        zone = zone_at(value, time_s) if type(value) is str else None
        if zone is None:
            tally.miss(spec.target, value)
            return
        record["timezone"], record["timezoneOffsetSeconds"] = zone
        return
    text = text_value(value)
    out: Any
    if transform == "offset":
        out = offset_seconds(value)
    elif text is None:
        out = None
    elif transform == "country":
        out = country_code(text)
    elif transform == "locale":
        out = locale_tag(text)
    elif spec.target == "systemName" and system_name(text) is None:
        return  # a web row's platform ("Web"), not an OS: absent, as a placeholder is
    elif spec.target == "systemVersion":
        out = os_version(text)
    else:
        out = text
    if out is not None:  # the validator's own check: what it refuses is not mapped
        out = CHECKS[spec.target](out)
    if out is None or type(out) is Problem:
        tally.miss(spec.target, value)
    else:
        record[spec.target] = out


def _put_agent(record: dict[str, Any], mapping: Mapping, obj: dict[str, Any]) -> None:
    """A web event's browser and OS from its client hints and user agent, when it carries
    no OS of its own."""
    if not (mapping.user_agent or mapping.user_agent_data) or "systemName" in record:
        return
    fields = agent_fields(first_present(obj, mapping.user_agent),
                          first_present(obj, mapping.user_agent_data))
    for target, value in fields.items():
        record.setdefault(target, value)


def _put_location(record: dict[str, Any], mapping: Mapping, obj: dict[str, Any],
                  tally: FieldTally) -> None:
    if not mapping.latitude:
        return
    raw_lat = first_present(obj, mapping.latitude)
    raw_lon = first_present(obj, mapping.longitude)
    if raw_lat is None and raw_lon is None:
        return
    lat, lon = coordinate(raw_lat, 90.0), coordinate(raw_lon, 180.0)
    if lat is None or lon is None:
        tally.miss("location", f"{raw_lat},{raw_lon}")
        return
    record["location"] = f"{lat!r},{lon!r}"


def _flat(attributes: dict[str, Any], prefix: str = "",
          depth: int = 0) -> list[tuple[str, Any]]:
    """Nested objects as `a.b` names (traits' address.city); bookkeeping names left out."""
    out: list[tuple[str, Any]] = []
    for name, value in attributes.items():
        if any(fnmatchcase(name, pattern) for pattern in BOOKKEEPING):
            continue
        if type(value) is dict and value and depth < _MAX_NESTING:
            out.extend(_flat(value, f"{prefix}{name}.", depth + 1))
        else:
            out.append((prefix + name, value))
    return out


def _valid_attributes(attributes: dict[str, Any], tally: FieldTally) -> dict[str, Any]:
    out: dict[str, Any] = {}
    renames: list[tuple[str, str]] = []
    for name, value in _flat(attributes):
        if not attribute_value(value):
            tally.miss("userAttributes", name)
            continue
        valid = attribute_name(name)
        if valid != name:
            renames.append((name, valid))
        out[valid] = value
    if out and may_name_secret(orjson.dumps(out)):  # the validator's own prefilter
        for valid in [n for n, value in out.items() if _names_secret(n, value)]:
            del out[valid]
            tally.drop(next((n for n, v in renames if v == valid), valid))  # as exported
    for name, valid in renames:
        if valid in out and name not in tally.renamed:
            tally.renamed[name] = valid
    return out


def _names_secret(name: str, value: Any) -> bool:
    """Whether validation would refuse the attribute: its name is a secret or configuration
    field (appId, clientKey, apiVersion, in any case), or it or its value spells one."""
    return bool(nested_secret_problems({"userAttributes": {name: value}}))
