"""The four built-in sources, written as the same TOML mappings that `--map` reads.

`replayer convert --print-map SOURCE` prints one, as a starting point for a custom export.
"""

from __future__ import annotations

import tomllib

from replayer.source.convert.mapping import Mapping, parse_mapping

AMPLITUDE = """\
# Amplitude Export API: a zip of hourly gzip files of JSON lines, times in UTC.
[event]
time = { path = "event_time", unit = "iso" }   # "YYYY-MM-DD HH:MM:SS.ffffff", UTC
user = ["device_id", "user_id"]                # Amplitude's sessions belong to a device
name = "event_type"
id = ["insert_id", "$insert_id"]               # raw exports hold duplicates: copies count once

[session]
rule = "key"                 # session_id: the session's start in epoch ms
key = "session_id"
key_start = "ms"             # a session starts there when its first event is later
no_key = [-1]                # -1: outside any session; the gap rule applies

[start]
userId = "user_id"
deviceId = "device_id"
appVersion = "version_name"
systemName = "os_name"
systemVersion = "os_version"
deviceModel = "device_model"
locale = { path = "language", transform = "locale" }      # a code, or a name ("English")
country = { path = "country", transform = "country" }     # a name, or a code
region = "region"
city = "city"
location = { lat = "location_lat", lon = "location_lng" }
userAttributes = "user_properties"

[web]                        # the web SDK: os_name is the browser, device_model the OS
when = { path = "platform", values = ["Web"] }
browserName = "os_name"
browserVersion = "os_version"
systemName = "device_model"
systemVersion = false
deviceModel = false
"""

MIXPANEL = """\
# Mixpanel raw event export: {"event": NAME, "properties": {...}} per line.
[event]
time = { path = "properties.time", unit = "auto" }   # UNIX seconds (ms in some exports)
user = "properties.distinct_id"
name = "event"
# Raw exports hold duplicates; Mixpanel counts two events as one only when the name,
# distinct_id, time and $insert_id all match (its Event Deduplication reference).
id = { all = ["event", "properties.distinct_id", "properties.time", "properties.$insert_id"] }
# UTC, whatever the project's zone: tells a local `time` (pass --source-timezone) apart
processed = { path = "properties.mp_processing_time_ms", unit = "ms" }
anonymous_prefix = ["$device:"]                      # ID merge's anonymous distinct_id

[session]
rule = "gap"                 # no session in the export: Mixpanel's own inactivity rule

[start]
userId = ["properties.$user_id", "properties.distinct_id"]   # unless anonymous: a device's
deviceId = ["properties.$device_id", "properties.$distinct_id_before_identity"]
appVersion = ["properties.$app_version_string", "properties.$app_release"]
systemName = "properties.$os"
systemVersion = "properties.$os_version"
deviceModel = "properties.$model"
browserName = "properties.$browser"
browserVersion = "properties.$browser_version"
country = { path = "properties.mp_country_code", transform = "country" }
region = "properties.$region"
city = "properties.$city"
"""

SEGMENT = """\
# Segment track/identify/page/screen calls, e.g. from an S3 archive; the snake_case
# alternatives are a warehouse dump's columns (tracks: user_id, context_app_version, ...).
[event]
time = { path = "timestamp", unit = "iso" }
user = ["userId", "anonymousId", "user_id", "anonymous_id"]
name = "event"
id = ["messageId", "id"]      # a retried call repeats its messageId (a warehouse's id)

[session]
rule = "marker"              # Application Opened starts a session; so does a pause
markers = ["Application Opened"]

[start]
userId = ["userId", "user_id"]
deviceId = ["context.device.id", "anonymousId", "context_device_id", "anonymous_id"]
appVersion = ["context.app.version", "context_app_version"]
systemName = ["context.os.name", "context_os_name"]
systemVersion = ["context.os.version", "context_os_version"]
deviceModel = ["context.device.model", "context_device_model"]
locale = { path = ["context.locale", "context_locale"], transform = "locale" }
country = { path = ["context.location.country", "context_location_country"], transform = "country" }
region = ["context.location.region", "context_location_region"]
city = ["context.location.city", "context_location_city"]
location = { lat = ["context.location.latitude", "context_location_latitude"], lon = ["context.location.longitude", "context_location_longitude"] }
timezone = { path = ["context.timezone", "context_timezone"], transform = "iana" }
# a group call's traits describe the group (its name, industry), not the user
userAttributes = { path = ["traits", "context.traits"], unless = { path = "type", values = ["group"] } }
userAgent = ["context.userAgent", "context_user_agent"]   # browser and OS without context.os
userAgentData = "context.userAgentData"   # analytics.js' client hints: OS before userAgent's
"""

GA4 = """\
# GA4 / Firebase BigQuery export as JSON lines (INT64 columns written as strings).
[event]
time = { path = "event_timestamp", unit = "us" }
user = "user_pseudo_id"
name = "event_name"
id = { all = ["event_bundle_sequence_id", "event_name", "event_timestamp"] }

[session]
rule = "key"                 # (user_pseudo_id, ga_session_id) identifies a session
key = "event_params[key=ga_session_id].value.int_value"

[start]
userId = "user_id"
deviceId = "user_pseudo_id"
appVersion = "app_info.version"
systemName = "device.operating_system"
systemVersion = "device.operating_system_version"
deviceModel = "device.mobile_model_name"
browserName = "device.web_info.browser"
browserVersion = "device.web_info.browser_version"
locale = { path = "device.language", transform = "locale" }
country = { path = "geo.country", transform = "country" }
region = "geo.region"
city = "geo.city"
timezoneOffsetSeconds = { path = "device.time_zone_offset_seconds", transform = "offset" }
userAttributes = { path = "user_properties", shape = "key_value_list" }

[web]                        # desktop web rows: mobile_model_name is the browser ("Chrome");
when = { path = "device.category", values = ["desktop"] }   # mobile web rows name the phone
deviceModel = false
"""

SOURCE_TOML: dict[str, str] = {
    "amplitude": AMPLITUDE, "mixpanel": MIXPANEL, "segment": SEGMENT, "ga4": GA4,
}


def builtin_mapping(source: str) -> Mapping:
    """The built-in mapping of `source` (one of SOURCE_TOML); a broken one is a bug."""
    mapping = parse_mapping(tomllib.loads(SOURCE_TOML[source]), name=source)
    assert isinstance(mapping, Mapping), mapping
    return mapping
