"""The emulator's user store: profiles, per-profile locks, accepted actions and counters.

Pure: no asyncio, no I/O; the app passes the clock reading in.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from replayer.limits import MAX_ID_CHARS

JSONObject = dict[str, Any]

_FLAG_WORDS = {"true": True, "1": True, "false": False, "0": False}


@dataclass(frozen=True, slots=True)
class StartAction:
    """The parts of a `start` action the store acts on; `user_key` is userId, else deviceId."""

    user_key: str
    time_s: float | None
    dev_mode: bool
    create_never: bool
    attributes: JSONObject | None


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why an action's parameters were refused: a 400, or an error element inside `multi`."""

    message: str


class Verdict(StrEnum):
    """What the store did with a well-formed `start` action."""

    ACCEPTED = "accepted"
    NOT_CREATED = "not_created"  # CreateNever and the user does not exist: a warning
    BLOCKED = "blocked"
    DEVMODE_LIMITED = "devmode_limited"


def parse_start(params: Mapping[str, Any]) -> StartAction | Invalid:
    """Read a `start` action's parameters (JSON values or query-string text) into a value."""
    user_id = _identifier(params, "userId")
    device_id = _identifier(params, "deviceId")
    time_s = _time(params.get("time"))
    dev_mode = _flag(params, "devMode")
    attributes = _attributes(params.get("userAttributes"))
    if isinstance(user_id, Invalid):
        return user_id
    if isinstance(device_id, Invalid):
        return device_id
    if isinstance(time_s, Invalid):
        return time_s
    if isinstance(dev_mode, Invalid):
        return dev_mode
    if isinstance(attributes, Invalid):
        return attributes
    user_key = user_id or device_id
    if not user_key:
        return Invalid("userId or deviceId is required")
    disposition = params.get("createDisposition") or "CreateIfNeeded"
    if disposition not in ("CreateIfNeeded", "CreateNever"):
        return Invalid(f"createDisposition must be CreateIfNeeded or CreateNever: {disposition!r}")
    return StartAction(
        user_key=user_key,
        time_s=time_s,
        dev_mode=dev_mode,
        create_never=disposition == "CreateNever",
        attributes=attributes,
    )


def user_key_of(params: Mapping[str, Any]) -> str | None:
    """The profile an action of any kind is for (userId, else deviceId), if it names one."""
    for name in ("userId", "deviceId"):
        value = _identifier(params, name)
        if isinstance(value, str) and value:
            return value
    return None


def _identifier(params: Mapping[str, Any], name: str) -> str | None | Invalid:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return Invalid(f"{name} must be a string")
    if len(value) > MAX_ID_CHARS:
        return Invalid(f"{name} is longer than {MAX_ID_CHARS} characters")
    return value


def _time(value: Any) -> float | None | Invalid:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return Invalid("time must be UNIX seconds")
    try:
        seconds = float(value)
    except ValueError:
        return Invalid(f"time must be UNIX seconds: {value!r}")
    return seconds if math.isfinite(seconds) else Invalid("time must be finite")


def _flag(params: Mapping[str, Any], name: str) -> bool | Invalid:
    value = params.get(name)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    word = _FLAG_WORDS.get(str(value).lower())
    return Invalid(f"{name} must be true or false") if word is None else word


def _attributes(value: Any) -> JSONObject | None | Invalid:
    # Objects arrive from JSON bodies; the published schema sends a JSON-encoded string.
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return Invalid("userAttributes is not valid JSON")
    if not isinstance(value, dict):
        return Invalid("userAttributes must be an object")
    return value


@dataclass(slots=True)
class Counters:
    """What happened since start or the last reset; `as_json` is the state endpoint's view."""

    requests: int = 0
    requests_by_action: Counter[str] = field(default_factory=Counter)
    requests_by_status: Counter[int] = field(default_factory=Counter)
    actions_accepted: int = 0
    lock_conflicts: int = 0
    devmode_limited: int = 0
    blocked: int = 0
    warnings: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    throttled: int = 0  # refused by the app-wide limit (--limit-rps)

    def as_json(self) -> JSONObject:
        """The counters as a JSON object with string keys."""
        return {
            "requests": self.requests,
            "requests_by_action": dict(self.requests_by_action),
            "requests_by_status": {str(k): v for k, v in sorted(self.requests_by_status.items())},
            "actions_accepted": self.actions_accepted,
            "lock_conflicts": self.lock_conflicts,
            "devmode_limited": self.devmode_limited,
            "blocked": self.blocked,
            "warnings": self.warnings,
            "faults": dict(self.faults),
            "throttled": self.throttled,
        }


class UserStore:
    """Users keyed by userId else deviceId, their locks and accepted actions, and counters.

    Accepted actions live in three flat arrays (user index, time, request number), about
    20 bytes each, so that hundreds of thousands of them stay cheap; `seq` is the position.
    """

    def __init__(
        self,
        *,
        known_users: Iterable[str] = (),
        blocked_users: Iterable[str] = (),
        devmode_min_interval_s: float = 1.0,
    ) -> None:
        self._known_users = tuple(sorted(known_users))
        self._blocked = frozenset(blocked_users)
        self._devmode_min_interval_s = devmode_min_interval_s
        self._locked: set[str] = set()  # in-flight state: survives `reset`
        self.reset()

    def reset(self) -> None:
        """Forget every user, action and counter; known users exist again, locks are kept."""
        self.counters = Counters()
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        self._attributes: dict[int, JSONObject] = {}
        self._devmode_last_s: dict[str, float] = {}
        self._action_user = array("I")
        self._action_time = array("d")  # NaN stands for "no time given"
        self._action_request = array("I")
        self._requests_opened = 0
        for key in self._known_users:
            self._user_index(key)

    def open_request(self, action: str) -> int:
        """Count a request that reached the API logic; returns its number (from 1)."""
        self._requests_opened += 1
        self.counters.requests_by_action[action] += 1
        return self._requests_opened

    def begin(self, user_keys: Collection[str]) -> str | None:
        """Lock every profile, or none: returns a profile already in progress, if any."""
        for key in user_keys:
            if key in self._locked:
                self.counters.lock_conflicts += 1
                return key
        self._locked.update(user_keys)
        return None

    def end(self, user_keys: Iterable[str]) -> None:
        """Release the locks taken by `begin`."""
        self._locked.difference_update(user_keys)

    def start(self, action: StartAction, *, request_no: int, now_s: float) -> Verdict:
        """Apply a `start` action for a locked profile; `now_s` is the server's clock."""
        key = action.user_key
        if key in self._blocked:
            self.counters.blocked += 1
            return Verdict.BLOCKED
        if action.dev_mode:
            last_s = self._devmode_last_s.get(key)
            if last_s is not None and now_s - last_s < self._devmode_min_interval_s:
                self.counters.devmode_limited += 1
                return Verdict.DEVMODE_LIMITED
            self._devmode_last_s[key] = now_s
        if action.create_never and key not in self._index:
            self.counters.warnings += 1
            return Verdict.NOT_CREATED
        user = self._user_index(key)
        self._action_user.append(user)
        self._action_time.append(math.nan if action.time_s is None else action.time_s)
        self._action_request.append(request_no)
        if action.attributes:
            self._attributes.setdefault(user, {}).update(action.attributes)
        self.counters.actions_accepted += 1
        return Verdict.ACCEPTED

    def snapshot(self) -> JSONObject:
        """Users with their accepted actions in arrival order, their attributes, and counters."""
        entries: list[list[JSONObject]] = [[] for _ in self._keys]
        rows = zip(self._action_user, self._action_time, self._action_request, strict=True)
        for seq, (user, time_s, request_no) in enumerate(rows, start=1):
            time = None if math.isnan(time_s) else time_s
            entries[user].append({"time": time, "seq": seq, "request": request_no})
        return {
            "users": dict(zip(self._keys, entries, strict=True)),
            "attributes": {self._keys[i]: dict(a) for i, a in self._attributes.items()},
            "counters": self.counters.as_json(),
        }

    def _user_index(self, key: str) -> int:
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self._keys)
            self._keys.append(key)
        return index
