"""Cron expressions: the five classic fields, and the next matching minute after a time.

``Cron.parse("*/15 9-17 * * 1-5")``: minute, hour, day of month, month, day of week (0 or 7 is
Sunday); each field is ``*``, a number, a range ``a-b``, a list ``a,b``, and any of these with
a step ``/n``. As in cron, when both day fields are restricted a day matches either. Times are
UTC epoch seconds.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from foundation.errors import InvalidArgument

__all__ = [
    "Cron",
]

_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day of month", "month", "day of week")


def _field(text: str, index: int) -> frozenset[int]:
    lo, hi = _BOUNDS[index]
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = lo, hi
        elif "-" in body:
            a, b = body.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = end = int(body)
            if step_text:
                end = hi
        if step < 1 or not lo <= start <= end <= hi:
            raise ValueError(part)
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Parse five fields; a bad one is an ``InvalidArgument`` naming it."""
        parts = expression.split()
        if len(parts) != 5:
            raise InvalidArgument(
                f"invalid cron expression {expression!r}: expected 5 fields "
                "(minute hour day-of-month month day-of-week)"
            )
        fields = []
        for i, text in enumerate(parts):
            try:
                fields.append(_field(text, i))
            except ValueError:
                raise InvalidArgument(
                    f"invalid cron expression {expression!r}: bad {_NAMES[i]} field {text!r}"
                ) from None
        minutes, hours, days, months, weekdays = fields
        return cls(expression, minutes, hours, days, months, weekdays, parts[2] == "*",
                   parts[4] == "*")  # fmt: skip

    def _day_matches(self, d: datetime.datetime) -> bool:
        day_ok = d.day in self.days
        weekday_ok = (d.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def next_after(self, t: float) -> float:
        """The first matching minute strictly after ``t`` (UTC epoch seconds)."""
        d = datetime.datetime.fromtimestamp(t, datetime.UTC).replace(second=0, microsecond=0)
        d += datetime.timedelta(minutes=1)
        for _ in range(366 * 24 * 60 * 5):  # at most five years of minutes
            if d.month not in self.months or not self._day_matches(d):
                d = (d + datetime.timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if d.hour not in self.hours:
                d = (d + datetime.timedelta(hours=1)).replace(minute=0)
                continue
            if d.minute not in self.minutes:
                d += datetime.timedelta(minutes=1)
                continue
            return d.timestamp()
        raise InvalidArgument(f"cron expression {self.expression!r} never matches")
