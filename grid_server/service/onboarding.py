"""Onboarding a whole street at once: many households' joins and their starting money.

The operator hands in the households' own signed ``join`` envelopes (each
signed at home with the household's key and a one-time invitation, exactly
as it would send it itself). They go to the group-commit writer all at once,
so they are checked one by one by the same rules as any join and committed
in the writer's batches (up to ``writer_max_batch`` joins a transaction),
not one transaction each. Then every household that joined gets ``funds``
of local-ledger money, minted in one transaction.

A refused join refuses only that household (its answer is the same error a
household would get); the others join and are funded. Sending the same
request again answers the joined ones as already members and funds nobody
twice (only joins accepted by this request are funded). Funds are
local-ledger money: on an IOTA grid ``funds`` must be 0 (households are sent
IOTA on chain).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from p2p_energy_client.protocol import Envelope, ErrorCode, LedgerKind, ProtocolError

from .ingest import Writer
from .payments import PaymentService

MAX_HOUSEHOLDS = 20_000  # per request: the joins' answers are held until all are in


@dataclass(kw_only=True, eq=False)
class Onboarding:
    writer: Writer
    payments: PaymentService

    async def onboard(
        self, joins: Sequence[tuple[bytes, Envelope]], funds: int = 0, memo: str | None = None
    ) -> dict[str, Any]:
        """Join every household, fund those that joined; what happened to each.

        ``joins``: ``(raw bytes, parsed envelope)`` of ``join`` envelopes.
        Returns ``{"joined": [...addresses], "refused": [{"index", "status",
        "error"}], "funded": n, "funds": funds}``.
        """
        if funds > 0 and self.payments.kind is not LedgerKind.LOCAL:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                "funds_micro: this grid's ledger is IOTA: send IOTA to the households' addresses",
                "funds_micro",
            )
        outcomes = await asyncio.gather(*(self.writer.submit(raw, env) for raw, env in joins))
        joined: list[str] = []
        refused: list[dict[str, Any]] = []
        for index, ((_, envelope), outcome) in enumerate(zip(joins, outcomes, strict=True)):
            if outcome.status == 200 and not outcome.duplicate:
                joined.append(envelope.sender)
            elif outcome.status != 200:
                error = orjson.loads(outcome.body).get("error", {})
                refused.append({"index": index, "status": outcome.status, "error": error})
        funded = 0
        if funds > 0 and joined:
            funded = len(await self.payments.mint_many([(a, funds) for a in joined], memo))
        return {"joined": joined, "refused": refused, "funded": funded, "funds": funds}


__all__ = ["MAX_HOUSEHOLDS", "Onboarding"]
