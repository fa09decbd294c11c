"""Outage: is the server down? Pauses intake and turns requests into paced probes while it is,
and stops the run (resumable) when it stays down for longer than the outage limit."""

from __future__ import annotations

from replayer.engine.control import Abort
from replayer.engine.flow import Flow
from replayer.engine.health import Health
from replayer.engine.pacing import Clock
from replayer.observe.logs import log
from replayer.records import Attempt, ExitCode


class Outage:
    """Watches answers through `Health`; logs when an outage begins and ends, counts them."""

    def __init__(self, *, window_s: float, probe_max_s: float, limit_s: float, clock: Clock,
                 flow: Flow) -> None:
        self._health = Health(window_s=window_s, probe_max_s=probe_max_s, last_ok_s=clock.now())
        self._limit_s = limit_s
        self._clock = clock
        self._flow = flow
        self.active = False
        self.since_s = 0.0  # when the current (or last) outage began
        self.count = 0

    def note(self, attempt: Attempt, *, now_s: float | None = None) -> None:
        """One attempt's answer (at `now_s`, the clock's now if not given): 5xx, 429 and no
        answer count as failures. No answer from an endpoint that was not reached (the
        request never left: refused, DNS, TLS, connect timeout; or it has never answered
        yet) is an outage at once: not the record's fault."""
        health, status = self._health, attempt.status
        if now_s is None:
            now_s = self._clock.now()
        if status is None:
            if attempt.sent and health.reached:
                health.failed(now_s=now_s)
            else:
                health.cut_off(now_s=now_s)
            return
        if status == 429 or status >= 500:
            health.reachable()
            health.failed(now_s=now_s)
            return
        health.answered(now_s=now_s)  # reachable, too
        if self.active:
            self.active = False
            log.warning("server answering again: resuming")
            self._flow.room.set()

    def down(self) -> bool:
        """Whether the server counts as down now; notes the moment an outage begins."""
        health = self._health
        if not health.may_be_down():
            return False  # the common case, told without reading the clock
        now_s = self._clock.now()
        down = health.down(now_s=now_s)
        if down and not self.active:
            self.active = True
            self.since_s = now_s
            self.count += 1
            if self._health.unreachable:
                log.warning("the endpoint cannot be reached: pausing intake, probing")
            else:
                log.warning("every request of the last %.0f s failed: pausing intake, probing",
                            self._health.window_s)
        return down

    async def probe_turn(self) -> None:
        """During an outage: one request at a time, after a growing pause (it is a probe).
        Once the outage has lasted the limit, stops the run instead (a resume goes on)."""
        while self._flow.in_flight:
            await self._flow.until_changed()
        if not self.down():
            return
        left_s = self.since_s + self._limit_s - self._clock.now()
        if left_s <= 0:
            self._flow.stop(Abort(ExitCode.OUTAGE, (
                f"the server was unavailable for {self._clock.now() - self.since_s:.1f} s "
                f"(--outage-limit {self._limit_s:g} s); resume once it is back")))
            return
        delay_s = min(self._health.probe_delay_s(), left_s)
        log.warning("server unavailable for %.0f s: waiting, next probe in %.1f s",
                    self._clock.now() - self._health.last_ok_s, delay_s)
        await self._clock.sleep(delay_s)
