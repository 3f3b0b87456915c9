"""When things may happen: gate closure, order horizon, settlement window, periods.

All pure functions of the grid's parameters and a moment of grid time.
An interval is named by its start ``t`` and lasts ``L`` (``interval_minutes``):

* orders for ``t`` are accepted while ``now < t - gate_closure`` and
  ``t <= now + horizon``; gate closure of ``t`` is ``t - gate_closure``;
* the interval is cleared as soon as its gate has closed;
* readings for ``t`` are accepted once ``t`` has begun (``t <= now``; a
  household reports after the fact, but a running interval may be reported
  partially and corrected later) and until ``t + L + settlement_window``;
  the interval is settled when that moment has passed;
* settlement periods (statements) are aligned to the epoch like intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from p2p_energy_client.protocol import ErrorCode, ProtocolError
from p2p_energy_client.units import EPOCH, format_utc, is_interval_start


@dataclass(frozen=True, slots=True)
class Schedule:
    interval_minutes: int
    gate_closure_seconds: int
    settlement_window_seconds: int
    order_horizon_seconds: int
    settlement_period_seconds: int

    @property
    def length(self) -> timedelta:
        return timedelta(minutes=self.interval_minutes)

    @property
    def length_seconds(self) -> int:
        return self.interval_minutes * 60

    def start_of(self, moment: datetime) -> datetime:
        seconds = int((moment - EPOCH).total_seconds() // 1)
        return EPOCH + timedelta(seconds=seconds - seconds % self.length_seconds)

    def gate_closure(self, interval: datetime) -> datetime:
        return interval - timedelta(seconds=self.gate_closure_seconds)

    def window_close(self, interval: datetime) -> datetime:
        return interval + self.length + timedelta(seconds=self.settlement_window_seconds)

    def last_gate_closed(self, now: datetime) -> datetime:
        """The latest interval whose gate has closed at ``now``."""
        return self.start_of(now + timedelta(seconds=self.gate_closure_seconds))

    def last_window_closed(self, now: datetime) -> datetime:
        """The latest interval whose settlement window has closed at ``now``."""
        return self.start_of(now - self.length - timedelta(seconds=self.settlement_window_seconds))

    def period_start(self, moment: datetime) -> datetime:
        seconds = int((moment - EPOCH).total_seconds() // 1)
        return EPOCH + timedelta(seconds=seconds - seconds % self.settlement_period_seconds)

    def period_end(self, period_start: datetime) -> datetime:
        return period_start + timedelta(seconds=self.settlement_period_seconds)

    def check_interval(self, interval: datetime, field: str) -> None:
        if not is_interval_start(interval, self.interval_minutes):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"{field}: {format_utc(interval)} is not the start of a "
                f"{self.interval_minutes}-minute interval",
                field,
            )

    def check_order_time(self, interval: datetime, now: datetime, field: str) -> None:
        self.check_interval(interval, field)
        if now >= self.gate_closure(interval):
            raise ProtocolError(
                ErrorCode.GATE_CLOSED,
                f"{field}: gate closure for {format_utc(interval)} was at "
                f"{format_utc(self.gate_closure(interval))}",
                field,
            )
        if interval > now + timedelta(seconds=self.order_horizon_seconds):
            raise ProtocolError(
                ErrorCode.BEYOND_HORIZON,
                f"{field}: orders are accepted at most {self.order_horizon_seconds // 3600} h "
                "ahead",
                field,
            )

    def check_reading_time(self, interval: datetime, now: datetime, field: str) -> None:
        self.check_interval(interval, field)
        if interval > now:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"{field}: {format_utc(interval)} has not begun yet",
                field,
            )
        if now >= self.window_close(interval):
            raise ProtocolError(
                ErrorCode.WINDOW_CLOSED,
                f"{field}: the settlement window of {format_utc(interval)} closed at "
                f"{format_utc(self.window_close(interval))}",
                field,
            )

    def max_energy_wh(self, power_w: int) -> int:
        """Energy a device of ``power_w`` can move in one interval (Wh, exact)."""
        return power_w * self.interval_minutes // 60
