"""The Leanplum API's limits (docs/leanplum-api.md), and the bounds on input values derived
from them: one definition that validation, convert, the emulator and the settings share."""

from __future__ import annotations

MAX_ID_CHARS = 400  # userId and deviceId
MAX_ATTRIBUTE_NAME_CHARS = 139  # user attribute names ("Limits on names")
MAX_MULTI_USERS = 50  # distinct users in one multi call
MAX_MULTI_ACTIONS = 500  # actions in one multi call
MAX_OFFSET_S = 14 * 3600  # timezoneOffsetSeconds: the widest real UTC offsets are -12h and +14h
MAX_FUTURE_S = 86400.0  # a record timed more than a day after now is refused
MAX_ISO_CHARS = 64  # no ISO-8601 timestamp is longer; spares parsing huge strings
