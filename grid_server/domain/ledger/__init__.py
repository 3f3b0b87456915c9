"""Pure rules of payments and the local ledger (no web, no database).

* :mod:`.rates`: where the rate for statements comes from; statement
  status from what was paid (the conversions are ``p2p_energy_client.units``').
* :mod:`.accounts`: the local ledger's rules for a transfer (signature,
  sequence number, balance) and the check of its hash chain.
* :mod:`.payouts`: which producer statements are paid how much, when.
"""

from .accounts import TransferRefused, check_transfer, verify_chain
from .payouts import PayoutPlan, StatementPosition, coverage_by_period, plan_payouts
from .rates import FixedRate, RateSource, statement_status

__all__ = [
    "FixedRate",
    "PayoutPlan",
    "RateSource",
    "StatementPosition",
    "TransferRefused",
    "check_transfer",
    "coverage_by_period",
    "plan_payouts",
    "statement_status",
    "verify_chain",
]
