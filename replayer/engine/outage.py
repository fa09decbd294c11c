"""Outage: is the server down? Pauses intake and turns requests into paced probes while it is."""

from __future__ import annotations

from replayer.engine.flow import Flow
from replayer.engine.health import Health
from replayer.engine.pacing import Clock
from replayer.observe.logs import log


class Outage:
    """Watches answers through `Health`; logs when an outage begins and ends, counts them."""

    def __init__(self, *, window_s: float, probe_max_s: float, clock: Clock, flow: Flow) -> None:
        self._health = Health(window_s=window_s, probe_max_s=probe_max_s, last_ok_s=clock.now())
        self._clock = clock
        self._flow = flow
        self.active = False
        self.count = 0

    def note(self, status: int | None) -> None:
        """One answer's status (None: no answer): 5xx, 429 and no answer count as failures."""
        now_s = self._clock.now()
        if status is None or status == 429 or status >= 500:
            self._health.failed(now_s=now_s)
            return
        self._health.answered(now_s=now_s)
        if self.active:
            self.active = False
            log.warning("server answering again: resuming")
            self._flow.room.set()

    def down(self) -> bool:
        """Whether the server counts as down now; notes the moment an outage begins."""
        down = self._health.down(now_s=self._clock.now())
        if down and not self.active:
            self.active = True
            self.count += 1
            log.warning("every request of the last %.0f s failed: pausing intake, probing",
                        self._health.window_s)
        return down

    async def probe_turn(self) -> None:
        """During an outage: one request at a time, after a growing pause (it is a probe)."""
        while self._flow.in_flight:
            await self._flow.until_changed()
        if self.down():
            delay_s = self._health.probe_delay_s()
            log.warning("server unavailable for %.0f s: waiting, next probe in %.1f s",
                        self._clock.now() - self._health.last_ok_s, delay_s)
            await self._clock.sleep(delay_s)
