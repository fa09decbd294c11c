"""Checks of a whole `Settings`: the endpoint, the credentials it needs, the workers bound.

Pure: no I/O; each check raises ConfigError with a message that never holds a secret.
"""

from __future__ import annotations

import ipaddress
import stat
from dataclasses import replace
from urllib.parse import urlsplit

from replayer.config.settings import (
    EMBEDDED,
    EMBEDDED_APP_ID,
    EMBEDDED_CLIENT_KEY,
    ConfigError,
    Secret,
    Settings,
)

WORKERS_PER_CPU = 4  # more processes than this only fight over the CPUs


def check_workers(workers: int, source: str, cpus: int) -> None:
    """Refuse more than WORKERS_PER_CPU workers per CPU (0, one per CPU, is always fine)."""
    if workers <= WORKERS_PER_CPU * cpus:
        return
    given = "--workers" if source.startswith("flag") else source
    raise ConfigError(
        f"{given} {workers} is more than {WORKERS_PER_CPU} per CPU (this machine has "
        f"{cpus} CPU{'s' if cpus != 1 else ''}: at most {WORKERS_PER_CPU * cpus})"
    )


def check_endpoint(settings: Settings, source: str) -> None:
    """Refuse what is neither "embedded" nor an http(s) URL, and http to a non-loopback host."""
    if settings.endpoint == EMBEDDED:
        return
    # The URL itself is not echoed: whatever is wrong with it may be a credential in it.
    try:
        parts = urlsplit(settings.endpoint)
        _ = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        raise ConfigError(
            f'{source}: expected "embedded" or an http(s) URL, but its host or port is not valid'
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        problem = "it is not an http(s) URL with a host"
    elif "@" in parts.netloc:
        problem = "it must not carry credentials (user:password@)"
    elif parts.query or parts.fragment:
        problem = "it must not carry a query or fragment (the action is added as ?action=...)"
    elif parts.path.rstrip("/") != "/api":
        problem = "its path must be /api, the API's only one"
    elif scheme == "http" and not settings.allow_insecure_http and not _is_loopback(
        parts.hostname
    ):
        raise ConfigError(
            f"{source}: plain http:// to {parts.hostname} would send the client key "
            "unencrypted; use https://, a loopback host, or allow it with "
            "--allow-insecure-http, REPLAYER_ALLOW_INSECURE_HTTP or [leanplum] allow_insecure_http"
        )
    else:
        return
    raise ConfigError(
        f'{source}: expected "embedded" or an http(s) URL such as '
        f"https://api.leanplum.com/api, but {problem}"
    )


def check_target_chosen(settings: Settings, *, credentials: list[str]) -> None:
    """Refuse to pick the emulator by default when Leanplum credentials are configured.

    Credentials say the user means a real app; sending its records to the built-in
    emulator because --endpoint was forgotten would look like a finished migration.
    A dry run sends nothing, so it needs no target.
    """
    if not credentials or settings.dry_run:
        return
    raise ConfigError(
        f"{credentials[0]} is set but no endpoint is: pass --endpoint "
        "https://api.leanplum.com/api to send to Leanplum, or --endpoint embedded to "
        "replay into the built-in emulator (nothing then reaches Leanplum); "
        "REPLAYER_ENDPOINT and [leanplum] endpoint work too"
    )


LEANPLUM_HOST = "api.leanplum.com"


def describe_target(endpoint: str, *, dry_run: bool = False) -> str:
    """Where a run's records go, in words for people (the start line, summaries, the report)."""
    if dry_run:
        return "nowhere (a dry run: nothing is sent)"
    if endpoint == EMBEDDED:
        return "the built-in emulator (nothing reaches Leanplum)"
    host = (urlsplit(endpoint).hostname or "").rstrip(".").lower()
    if host == LEANPLUM_HOST:
        return f"Leanplum at {endpoint}"
    if _is_loopback(host):
        return f"{endpoint} (on this machine, not Leanplum)"
    return endpoint


def is_remote(endpoint: str) -> bool:
    """True for an endpoint that is neither embedded nor on this machine (the real API, say)."""
    if endpoint == EMBEDDED:
        return False
    host = urlsplit(endpoint).hostname or ""
    return not _is_loopback(host)


def _is_loopback(host: str) -> bool:
    if host.rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_credentials(settings: Settings) -> Settings:
    """Fill the emulator's test credentials for "embedded"; require real ones otherwise."""
    if settings.endpoint == EMBEDDED:
        return replace(
            settings,
            app_id=settings.app_id or EMBEDDED_APP_ID,
            client_key=settings.client_key or Secret(EMBEDDED_CLIENT_KEY),
        )
    if settings.app_id is None:
        raise ConfigError(
            "a Leanplum endpoint needs an app id: set LEANPLUM_APP_ID, --app-id "
            "or [leanplum] app_id"
        )
    if settings.client_key is None:
        raise ConfigError(
            "a Leanplum endpoint needs a client key: set LEANPLUM_CLIENT_KEY, or point "
            "--client-key-file, REPLAYER_CLIENT_KEY_FILE or [leanplum] client_key_file "
            "at a file holding it"
        )
    return settings


def key_file_warning(mode: int, source: str) -> str | None:
    """The ssh-like warning for a client key file whose `mode` lets group or others in."""
    if not stat.S_ISREG(mode) or not mode & 0o077:
        return None  # a pipe or /dev/fd (a secret handed over by a shell) has no such mode
    return (
        f"WARNING: the client key file given by {source} is accessible by group or others "
        f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it"
    )
