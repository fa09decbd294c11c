"""Writes the binary samples (Amplitude's zip of hourly gzip files, Segment's gzip archive)
from the readable lines below, byte for byte the same on every run.

    python samples/exports/build_archives.py
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
_ZIP_TIME = (2026, 1, 2, 0, 0, 0)

# Amplitude Export API: one gzip file of JSON lines per hour, in a zip per project.
AMPLITUDE_10 = """\
{"event_type":"session_start","user_id":"u1","device_id":"d1","amplitude_id":101,"event_time":"2026-01-01 10:00:00.000000","client_event_time":"2026-01-01 09:59:58.120000","session_id":1767261600000,"version_name":"3.2.0","os_name":"ios","os_version":"17.2","device_model":"iPhone15,2","device_brand":"Apple","platform":"iOS","country":"United States","region":"California","city":"San Francisco","language":"English","location_lat":37.7749,"location_lng":-122.4194,"user_properties":{"plan":"pro","[Amplitude] cohort":"a","-beta":true},"event_properties":{}}
{"event_type":"play","user_id":"u1","device_id":"d1","amplitude_id":101,"event_time":"2026-01-01 10:05:00.250000","session_id":1767261600000,"version_name":"3.2.0","os_name":"ios","os_version":"17.2","country":"United States","language":"English","user_properties":{"plan":"pro","level":7},"event_properties":{"track":"t9"}}
{"event_type":"pause","user_id":"u1","device_id":"d1","amplitude_id":101,"event_time":"2026-01-01 10:03:00.000000","session_id":1767261600000,"country":"United States","language":"English","user_properties":{"plan":"trial"},"event_properties":{}}
{"event_type":"server_sync","user_id":null,"device_id":"d2","amplitude_id":102,"event_time":"2026-01-01 10:10:00.000000","session_id":-1,"version_name":"1.0.0","os_name":"android","os_version":"14","device_model":"Pixel 8","country":"Atlantis","city":"Poseidonis","language":"de","user_properties":{},"event_properties":{}}
{"event_type":"server_sync","user_id":null,"device_id":"d2","amplitude_id":102,"event_time":"2026-01-01 10:40:00.000000","session_id":-1,"version_name":"1.0.1","os_name":"android","os_version":"14","device_model":"Pixel 8","country":"DE","language":"de","user_properties":{},"event_properties":{}}
{"event_type":"session_start","user_id":"u3","device_id":"d3","amplitude_id":103,"event_time":"2026-01-01 10:40:00.000000","session_id":1767264000000,"version_name":"3.1.0","os_name":"android","os_version":"13","device_model":"SM-A546B","country":"Germany","region":"Berlin","city":"Berlin","language":"German","location_lat":52.52,"location_lng":13.405,"user_properties":{"a,b":"x","12":"twelve"},"event_properties":{}}
{"event_type":"play","user_id":"u3",
{"event_type":"play","user_id":null,"device_id":null,"event_time":"2026-01-01 10:41:00.000000","session_id":1767264000000}
{"event_type":"play","user_id":"u3","device_id":"d3","session_id":1767264000000}
"""
AMPLITUDE_11 = """\
{"event_type":"play","user_id":"u3","device_id":"d3","amplitude_id":103,"event_time":"2026-01-01 11:05:00.000000","session_id":1767264000000,"version_name":"3.1.0","country":"Germany","language":"German","user_properties":{"a,b":"y"},"event_properties":{}}
{"event_type":"session_start","user_id":"u1","device_id":"d1","amplitude_id":101,"event_time":"2026-01-01 11:20:00.000000","session_id":1767266400000,"version_name":"3.2.1","os_name":"ios","os_version":"17.3","device_model":"iPhone15,2","country":"United States","region":"California","city":"San Francisco","language":"English","user_properties":{"plan":"pro"},"event_properties":{}}
{"event_type":"play","user_id":"u1","device_id":"d1","amplitude_id":101,"event_time":"2026-01-01 10:20:00.000000","session_id":1767261600000,"country":"United States","language":"English","user_properties":{},"event_properties":{}}
{"event_type":"session_start","user_id":"u4","device_id":"d4","amplitude_id":104,"event_time":"2026-01-01 11:30:00.000000","session_id":1767267000000,"version_name":"3.2.1","os_name":"ios","os_version":"16.7","device_model":"iPhone12,1","country":"United Kingdom","city":"London","language":"en","location_lat":"51.5072","location_lng":"-0.1276","user_properties":{"plan":"free"},"event_properties":{}}
"""

# Segment: track/identify/screen calls as an S3 archive writes them (gzip JSON lines).
SEGMENT_A = """\
{"type":"track","event":"Application Opened","userId":"s1","anonymousId":"anon-1","messageId":"m-01","timestamp":"2026-01-01T10:00:00.000Z","context":{"app":{"name":"Tunes","version":"1.4.0","build":"140"},"device":{"id":"dev-s1","manufacturer":"Apple","model":"iPhone14,5","type":"ios"},"os":{"name":"iOS","version":"17.2"},"locale":"en-US","timezone":"America/New_York","location":{"city":"New York","country":"United States","region":"NY","latitude":40.7128,"longitude":-74.006}},"properties":{"from_background":false}}
{"type":"identify","userId":"s1","anonymousId":"anon-1","messageId":"m-02","timestamp":"2026-01-01T10:00:05.000Z","traits":{"plan":"free","email_opt_in":true,"name":"Ann"},"context":{"app":{"version":"1.4.0"},"device":{"id":"dev-s1"},"locale":"en-US","timezone":"America/New_York"}}
{"type":"track","event":"Song Played","userId":"s1","anonymousId":"anon-1","messageId":"m-03","timestamp":"2026-01-01T10:10:00.000Z","context":{"device":{"id":"dev-s1"}},"properties":{"song":"a"}}
{"type":"track","event":"Song Played","userId":"s1","anonymousId":"anon-1","messageId":"m-04","timestamp":"2026-01-01T10:05:00.000Z","context":{"device":{"id":"dev-s1"}},"properties":{"song":"b"}}
{"type":"track","event":"Application Opened","userId":"s1","anonymousId":"anon-1","messageId":"m-05","timestamp":"2026-01-01T10:20:00.000Z","context":{"app":{"version":"1.4.0"},"device":{"id":"dev-s1","model":"iPhone14,5"},"os":{"name":"iOS","version":"17.2"},"locale":"en-us","timezone":"America/New_York","location":{"country":"US"}},"properties":{"from_background":true}}
{"type":"screen","name":"Home","anonymousId":"anon-2","messageId":"m-06","timestamp":"2026-01-01T10:30:00.000Z","context":{"app":{"version":"1.3.9"},"os":{"name":"Android","version":"14"},"device":{"model":"Pixel 7"},"locale":"fr","timezone":"Europe/Paris","location":{"country":"FR","city":"Paris"},"traits":{"theme":"dark"}}}
{"type":"screen","name":"Home","anonymousId":"anon-2","messageId":"m-07","timestamp":"2026-01-01T11:00:00.000Z","context":{"app":{"version":"1.3.9"},"os":{"name":"Android","version":"14"},"locale":"fr-FR","timezone":"Europe/Paris","location":{"country":"France"}}}
"""
SEGMENT_B = """\
{"type":"track","event":"Song Played","userId":"s1","anonymousId":"anon-1","messageId":"m-08","timestamp":"2026-01-01T10:45:00.000Z","context":{"device":{"id":"dev-s1"}},"properties":{"song":"c"}}
{"type":"screen","name":"Search","anonymousId":"anon-2","messageId":"m-09","timestamp":"2026-01-01T11:10:00.000Z","context":{"locale":"fr-FR"}}
{"type":"track","event":"Song Played","userId":"s1","anonymousId":"anon-1","messageId":"m-10","timestamp":"2026-01-01T10:15:00.000Z","properties":{"song":"late"}}
{"type":"track","event":"Song Played","userId":"s2","messageId":"m-11","properties":{}}
{"type":"track","event":"Song Played","userId":"s2","messageId":"m-12","timestamp":"yesterday","properties":{}}
[1, 2]
{"type":"track","event":"Application Opened","userId":"s3","messageId":"m-13","timestamp":"2026-01-01T11:20:00.000Z","context":{"timezone":"Mars/Olympus_Mons","locale":"??","location":{"country":"Narnia","latitude":123.0,"longitude":10.0}}}
"""


def _gzip(text: str) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as stream:
        stream.write(text.encode())
    return out.getvalue()


def main() -> None:
    """Writes samples/exports/amplitude/*.zip and samples/exports/segment/**.gz."""
    amplitude = HERE / "amplitude" / "export-123456-2026-01-01.zip"
    amplitude.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(amplitude, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, text in (("123456/123456_2026-01-01_10#0.json.gz", AMPLITUDE_10),
                           ("123456/123456_2026-01-01_11#0.json.gz", AMPLITUDE_11)):
            archive.writestr(zipfile.ZipInfo(name, _ZIP_TIME), _gzip(text))
    segment = HERE / "segment" / "1767225600000"
    segment.mkdir(parents=True, exist_ok=True)
    (segment / "1767261600000.a1b2c3.gz").write_bytes(_gzip(SEGMENT_A))
    (segment / "1767265200000.d4e5f6.gz").write_bytes(_gzip(SEGMENT_B))


if __name__ == "__main__":
    main()
