"""Pure rules of payments and the local ledger (no web, no database).

* :mod:`.rates`: currency ↔ ledger units at a rate recorded in each
  statement; statement status from what was paid.
* :mod:`.accounts`: the local ledger's rules for a transfer (signature,
  sequence number, balance) and the check of its hash chain.
* :mod:`.payouts`: which producer statements are paid how much, when.
"""

from .accounts import TransferRefused, check_transfer, verify_chain
from .payouts import PayoutPlan, StatementPosition, coverage_by_period, plan_payouts
from .rates import (
    FixedRate,
    RateSource,
    format_rate,
    ledger_amount,
    paid_micro,
    parse_rate,
    rate_from_price,
    statement_status,
)

__all__ = [
    "FixedRate",
    "PayoutPlan",
    "RateSource",
    "StatementPosition",
    "TransferRefused",
    "check_transfer",
    "coverage_by_period",
    "format_rate",
    "ledger_amount",
    "paid_micro",
    "parse_rate",
    "plan_payouts",
    "rate_from_price",
    "statement_status",
    "verify_chain",
]
