"""What the operator's dashboard shows: read-only aggregates over the grid's tables.

Each view is a fetch (queries of :mod:`grid_server.storage`, in one read
transaction) and a builder (a pure function from those rows to the JSON the
page gets, ``grid_server/api/static/dashboard``, served by
:mod:`grid_server.api.dashboard`):

* :mod:`.overview`: now, the next gate closure, participants, the market's
  recent past and its totals;
* :mod:`.market`: one interval's curves, clearing points, fills and flows;
* :mod:`.participants`: households, a page of them or one in detail;
* :mod:`.payments`: the ledger, payments, payouts, overdue statements;
* :mod:`.audit`: the hash chain, roots, anchors, the last verification;
* :mod:`.invitations`: the latest invitations, and new ones as link and QR code;
* :mod:`.live`: the clock and the event summary the page's stream sends.

Savings against the status quo are defined in :mod:`.savings` (shared with
the demo's report); units and rounding in :mod:`.common`.
"""

from __future__ import annotations

from .audit import audit_view
from .common import DEFAULT_HOURS, MAX_HOURS, PAGE_LIMIT, money
from .invitations import MAX_ISSUE, invitations_view, issued_view
from .live import clock_view, events_after, last_event_id
from .market import market
from .overview import overview
from .participants import participant_detail, participants_view
from .payments import payments_view
from .savings import savings_nano
from .source import Source

__all__ = [
    "DEFAULT_HOURS",
    "MAX_HOURS",
    "MAX_ISSUE",
    "PAGE_LIMIT",
    "Source",
    "audit_view",
    "clock_view",
    "events_after",
    "invitations_view",
    "issued_view",
    "last_event_id",
    "market",
    "money",
    "overview",
    "participant_detail",
    "participants_view",
    "payments_view",
    "savings_nano",
]
