"""Is the server down? Tracks answers over time and paces probes during an outage. Pure.

An outage is declared when nothing has succeeded for `window_s` and at least
`min_failures` requests failed meanwhile (failing = 5xx, 429, timeout, connection
error: the server did not do its job), and at once when a request cannot reach the
server at all (refused, reset or timed-out connect, DNS, TLS), or loses its answer
before the server has ever answered: that is not about the record. Any real answer
(delivered, a warning, a 4xx about the record) proves the server is up; any HTTP
answer proves it reachable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Health:
    """The server's state as the replay sees it; time values are monotonic seconds."""

    window_s: float
    probe_max_s: float
    last_ok_s: float
    min_failures: int = 3
    failures: int = 0  # since the last success
    probes_failed: int = 0  # consecutive, during this outage
    reached: bool = False  # some request got an HTTP answer (the endpoint was up once)
    unreachable: bool = False  # the last word on the endpoint: it could not be reached

    def answered(self, *, now_s: float) -> None:
        """The server did its job for one request."""
        self.last_ok_s = now_s
        self.failures = 0
        self.probes_failed = 0
        self.reached = True  # reachable(), without a call per answer
        self.unreachable = False

    def failed(self, *, now_s: float) -> None:
        """A request failed in a way that says the server may be down."""
        if self.down(now_s=now_s):
            self.probes_failed += 1
        self.failures += 1

    def reachable(self) -> None:
        """An HTTP answer came, whatever it said: the endpoint is up."""
        self.reached = True
        self.unreachable = False

    def cut_off(self, *, now_s: float) -> None:
        """A request could not reach the endpoint: it counts as down from now on."""
        self.failed(now_s=now_s)
        self.unreachable = True

    def may_be_down(self) -> bool:
        """False when `down` is False at any time: reachable, and too few failures since
        the last success (what a caller can tell without reading its clock)."""
        return self.unreachable or self.failures >= self.min_failures

    def down(self, *, now_s: float) -> bool:
        """True while the endpoint cannot be reached, or every request of the last
        `window_s` seconds failed."""
        return self.may_be_down() and (
            self.unreachable or now_s - self.last_ok_s >= self.window_s)

    def probe_delay_s(self) -> float:
        """Pause before the next probe: 1 s, doubling per failed probe, up to `probe_max_s`."""
        return min(self.probe_max_s, 2.0 ** min(self.probes_failed, 60))  # no overflow
