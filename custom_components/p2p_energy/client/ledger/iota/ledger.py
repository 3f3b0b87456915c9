"""``IotaLedger``: the :class:`~..base.Ledger` interface on IOTA Rebased.

A payment: read the reference gas price and the sender's coins, build the
transfer (merging coins when the largest is too small), dry-run it for the
gas budget, sign, execute, check the effects (success, the recipient got
exactly the amount), wait until it is in a checkpoint.

Never paying twice
------------------
Signed bytes have one digest, and an owned coin version can be spent by one
transaction only. So:

1. After a timeout, a connection error or a "transient" answer during
   execute, the outcome is unknown. We look the digest up; if the node
   knows it, that is the result. If not, we re-submit **the same bytes**
   (which can land at most once), until ``submit_deadline``.
2. New bytes are built and signed only when the old ones can never land:
   the node refused them, does not know their digest, and at least one
   coin they reference is now at a higher version that another transaction
   made (owned versions only move forward, so the old bytes are stale for
   ever). That is the only automatic re-build (e.g. the node's coin index
   lagged behind our previous payment).
3. Otherwise the call ends with :class:`TransferInDoubt` carrying the
   digest. Callers must not start a new payment for the same obligation;
   they reconcile with :meth:`IotaLedger.lookup` or re-submit the same
   :class:`SignedTransaction` (persisted with ``to_json``) later.

A transaction that executed but *failed* (``TransferFailed``) paid nothing
and consumed only gas; paying again is safe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import aiohttp

from ...crypto import KeyPair, is_address
from ...crypto import b64encode as _b64encode
from ...lifecycle import AsyncCloseable
from ..base import (
    InsufficientFunds,
    LedgerError,
    Payment,
    TransferInDoubt,
    TransferRecord,
    TxStatus,
    ledger_address,
)
from .batch import (
    PLANNING_LIMITS,
    BatchTooLarge,
    batch_capacity,
    build_batch,
    check_limits,
    check_payments,
    payment_terms,
    plan_batches,
)
from .bcs import (
    U64_MAX,
    BcsError,
    ImmOrOwnedObject,
    ObjectRef,
    TransactionData,
    decode_transaction_data,
    encode_transaction_data,
    normalize_address,
    split_sender_signed_data,
)
from .rpc import (
    Coin,
    GasCost,
    IotaRpcClient,
    NodeUnavailable,
    RpcError,
    TransactionBlock,
    is_iota_coin_type,
)
from .transactions import (
    SignedTransaction,
    build_transfer,
    is_transaction_digest,
    transaction_digest,
)

if TYPE_CHECKING:
    from ..base import Ledger

UNIT = "nanos"
# Builds the transaction from (gas payment coins, coins to merge, gas price, budget).
type _Builder = Callable[[list[ObjectRef], list[ObjectRef], int, int], TransactionData]

# Protocol limits, from iotaledger/iota crates/iota-protocol-config (protocol
# versions 1–12) and crates/iota-types/src/gas_model/gas_v1.rs:
# the minimum budget is base_tx_cost_fixed (1,000 gas units) × reference gas
# price (GasBudgetTooLow below it); the maximum is max_tx_gas; fewer than
# max_gas_payment_objects coins may pay gas (transaction.rs compares with <).
# The limits on a transaction's shape and size are in .batch (PROTOCOL_LIMITS).
BASE_TX_COST_FIXED_UNITS = 1_000
MAX_TX_GAS = 50_000_000_000
MAX_GAS_PAYMENT_OBJECTS = 256
# The TypeScript SDK adds 1,000 gas units × price on top of the dry run's
# computation cost (GAS_SAFE_OVERHEAD in json-rpc-resolver.ts); we do the same.
GAS_SAFE_OVERHEAD_UNITS = 1_000
# The budget the dry run itself runs with (50× the minimum): generous for a
# coin transfer, small enough that a sender with little money can dry-run.
DRY_RUN_BUDGET_UNITS = 50_000
# A batch's dry run gets this much more per payment: each payment stores a new
# coin, about 1,000,000 nanos of storage (gas_v1: ~130 bytes × 100 × storage
# price 76), five times over at the reference price of 1,000.
DRY_RUN_BUDGET_UNITS_PER_PAYMENT = 5_000
# How many times a transfer re-builds after its bytes were proven dead.
MAX_REBUILDS = 3
# UserInputError::ObjectVersionUnavailableForConsumption (iota-types error.rs).
_STALE_OBJECT = "is not available for consumption"


class IotaNetwork(StrEnum):
    MAINNET = "mainnet"
    TESTNET = "testnet"
    DEVNET = "devnet"
    LOCALNET = "localnet"


# The IOTA Foundation's public full nodes and a local network's default port.
NETWORK_URLS: Mapping[IotaNetwork, str] = {
    IotaNetwork.MAINNET: "https://api.mainnet.iota.cafe",
    IotaNetwork.TESTNET: "https://api.testnet.iota.cafe",
    IotaNetwork.DEVNET: "https://api.devnet.iota.cafe",
    IotaNetwork.LOCALNET: "http://127.0.0.1:9000",
}


@dataclass(frozen=True, slots=True)
class IotaConfig:
    """Where the node is and how long to wait for it (seconds)."""

    url: str
    network: IotaNetwork | None = None
    request_timeout: float = 10.0
    execute_timeout: float = 30.0
    # How long a transfer keeps re-submitting the same bytes after unknown outcomes.
    submit_deadline: float = 120.0
    checkpoint_timeout: float = 60.0
    poll_interval: float = 0.25
    # Extra budget on top of the dry run's computation + storage cost.
    gas_margin_percent: int = 20
    # Most coins (gas payment + merged) one payment may use.
    max_coins: int = MAX_GAS_PAYMENT_OBJECTS

    @classmethod
    def for_network(cls, network: IotaNetwork | str, **options: Any) -> IotaConfig:
        net = IotaNetwork(network)
        return cls(url=NETWORK_URLS[net], network=net, **options)


class TransferFailed(LedgerError):
    """Executed with a failure status: only gas was charged, nothing was paid."""

    def __init__(self, tx_id: str, error: str) -> None:
        super().__init__("tx_failed", f"transaction {tx_id} failed: {error}")
        self.tx_id = tx_id
        self.error = error


class TransactionRejected(LedgerError):
    """The node refused the transaction; it was not executed.

    ``can_never_land`` is True when the bytes reference a coin version that
    another transaction has since consumed, so they can never execute.
    """

    def __init__(self, tx_id: str, message: str, *, can_never_land: bool) -> None:
        super().__init__("rejected", f"transaction {tx_id} refused: {message}")
        self.tx_id = tx_id
        self.can_never_land = can_never_land


class PaymentNotVerified(LedgerError):
    """An incoming payment does not (yet) prove what was claimed.

    ``retryable`` is True for ``tx_not_found``, ``tx_pending`` and
    ``node_unavailable``: asking again later may succeed. The other codes
    (``invalid_tx_id``, ``tx_failed``, ``wrong_sender``, ``wrong_recipient``,
    ``amount_too_small``) are final.
    """

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(code, message)
        self.retryable = retryable


def gas_budget_from_dry_run(gas: GasCost, *, price: int, margin_percent: int) -> int:
    """Budget for a transaction whose dry run cost ``gas``.

    Computation plus storage cost, plus ``margin_percent``, plus the SDK's
    1,000-unit overhead, and at least the protocol minimum. The storage
    rebate is deliberately not subtracted: it is refunded after execution
    and depends on which coins end up merged, and an unused budget costs
    nothing (only what is used is charged).
    """
    cost = gas.computation_cost + gas.storage_cost
    with_margin = -(-cost * (100 + margin_percent) // 100)  # ceiling
    budget = with_margin + GAS_SAFE_OVERHEAD_UNITS * price
    return min(max(budget, BASE_TX_COST_FIXED_UNITS * price), MAX_TX_GAS)


def select_coins(
    coins: Sequence[Coin], *, amount: int, budget: int, max_coins: int = MAX_GAS_PAYMENT_OBJECTS
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """(gas payment, coins to merge) covering ``amount`` + ``budget``, largest coins first.

    Gas payment is the fewest largest coins whose sum covers the budget (the
    node checks that on the payment coins alone); further coins are merged
    into the gas coin until the amount is covered as well.
    """
    ordered = sorted(coins, key=lambda c: (-c.balance, c.object_id))
    total = sum(c.balance for c in ordered)
    if total < amount + budget:
        raise InsufficientFunds(f"{total} nanos available, {amount} + gas budget {budget} needed")
    payment: list[Coin] = []
    covered = 0
    for coin in ordered:
        if covered >= budget:
            break
        payment.append(coin)
        covered += coin.balance
    merges: list[Coin] = []
    for coin in ordered[len(payment) :]:
        if covered >= amount + budget:
            break
        merges.append(coin)
        covered += coin.balance
    if len(payment) + len(merges) > max_coins or len(payment) >= MAX_GAS_PAYMENT_OBJECTS:
        raise LedgerError(
            "too_many_coins",
            f"paying {amount} needs {len(payment) + len(merges)} coins, more than {max_coins};"
            " merge the sender's coins first",
        )
    return [c.ref for c in payment], [c.ref for c in merges]


def _sums_by_recipient(payments: Sequence[Payment]) -> dict[str, int]:
    """What each recipient receives in all (a recipient may be paid more than once)."""
    sums: dict[str, int] = {}
    for payment in payments:
        sums[payment.recipient] = sums.get(payment.recipient, 0) + payment.amount
    return sums


def _only_recipient(payments: Sequence[Payment]) -> str:
    """The recipient when every payment goes to the same one, else ``""``."""
    recipients = {p.recipient for p in payments}
    return recipients.pop() if len(recipients) == 1 else ""


def _signed_payments(block: TransactionBlock) -> tuple[Payment, ...] | None:
    """The payments in the signed bytes the node returned, if it is a payment built here.

    ``None`` without raw input or for any other kind of transaction. Bytes
    that do not hash to the digest the node answered for are refused.
    """
    if block.raw_transaction is None:
        return None
    try:
        tx_bytes, _signatures = split_sender_signed_data(block.raw_transaction)
    except BcsError as exc:
        raise LedgerError("malformed_response", f"rawTransaction: {exc}") from exc
    if transaction_digest(tx_bytes) != block.digest:
        raise LedgerError(
            "malformed_response", f"the raw transaction is not {block.digest}'s bytes"
        )
    try:
        return payment_terms(decode_transaction_data(tx_bytes))
    except BcsError:
        return None


def _datetime_from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _intended_transfer(raw: Mapping[str, Any]) -> tuple[str, int]:
    """Best effort (recipient, amount) from a transaction's JSON input (for failed ones)."""
    try:
        ptb = raw["transaction"]["data"]["transaction"]
        inputs = ptb["inputs"]
        recipient = amount = None
        for command in ptb["transactions"]:
            if "TransferObjects" in command:
                address_arg = command["TransferObjects"][1]
                recipient = normalize_address(inputs[address_arg["Input"]]["value"])
            if "SplitCoins" in command:
                amounts = command["SplitCoins"][1]
                if len(amounts) == 1:
                    amount = int(inputs[amounts[0]["Input"]]["value"])
        if recipient is not None and amount is not None:
            return recipient, amount
    except (KeyError, IndexError, TypeError, ValueError, BcsError):
        pass
    return "", 0


def _claim_addresses(
    tx_id: str, expected_sender: str, recipient: str, min_amount: int
) -> tuple[str, str]:
    """The claimed payment's sender and recipient in normal form, once the claim is well formed.

    Checked before asking the node: a malformed claim is final (no retry can
    fix it) and costs no request.
    """
    if not is_transaction_digest(tx_id):
        raise PaymentNotVerified(
            "invalid_tx_id", f"{tx_id!r} is not a transaction digest", retryable=False
        )
    if isinstance(min_amount, bool) or not isinstance(min_amount, int) or min_amount < 1:
        raise PaymentNotVerified(
            "invalid_amount", "min_amount must be a positive integer", retryable=False
        )
    try:
        return normalize_address(expected_sender), normalize_address(recipient)
    except BcsError as exc:
        raise PaymentNotVerified("invalid_address", str(exc), retryable=False) from exc


def _received_from(
    block: TransactionBlock, tx_id: str, sender: str, recipient: str, min_amount: int
) -> int:
    """What ``recipient`` received in ``block``, once it is a successful payment by ``sender``.

    The amount is the recipient's net IOTA balance change, not what the
    transaction's input intended: only the effects say what was paid. Every
    refusal here is final, the transaction is settled as it is.
    """
    if not block.succeeded:
        raise PaymentNotVerified("tx_failed", f"{tx_id} failed: {block.error}", retryable=False)
    if block.sender != sender:
        raise PaymentNotVerified(
            "wrong_sender", f"{tx_id} was sent by {block.sender}", retryable=False
        )
    received = block.net_change(recipient)
    if received <= 0:
        raise PaymentNotVerified(
            "wrong_recipient", f"{tx_id} pays nothing to {recipient}", retryable=False
        )
    if received < min_amount:
        raise PaymentNotVerified(
            "amount_too_small",
            f"{tx_id} pays {received} nanos, {min_amount} expected",
            retryable=False,
        )
    return received


class IotaLedger(AsyncCloseable):
    """The ledger interface on IOTA Rebased (amounts in nanos, ids are digests)."""

    def __init__(
        self,
        config: IotaConfig | str,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.config = IotaConfig(url=config) if isinstance(config, str) else config
        self.rpc = IotaRpcClient(
            self.config.url,
            session=session,
            request_timeout=self.config.request_timeout,
            execute_timeout=self.config.execute_timeout,
        )
        # One payment per sender at a time in this process: two concurrent
        # payments would otherwise pick the same coin versions.
        self._locks: dict[str, asyncio.Lock] = {}

    async def close(self) -> None:
        await self.rpc.close()

    @property
    def unit(self) -> str:
        return UNIT

    def address_of(self, public_key: bytes) -> str:
        return ledger_address(public_key)

    async def balance(self, address: str) -> int:
        try:
            owner = normalize_address(address)
        except BcsError as exc:
            raise LedgerError("invalid_address", str(exc)) from exc
        return await self.rpc.get_balance(owner)

    # --- paying ---

    async def transfer(
        self, keys: KeyPair, recipient: str, amount: int, *, memo: str | None = None
    ) -> str:
        """Pay ``amount`` nanos to ``recipient``; returns the digest once checkpointed.

        ``memo`` is not recorded: a plain IOTA coin transfer has no field for
        it (the grid keeps its own reference next to the digest).
        Raises :class:`InsufficientFunds` (nothing sent), :class:`TransferFailed`
        (executed, failed, nothing paid), :class:`TransactionRejected`,
        :class:`TransferInDoubt` (do not pay again) or another :class:`LedgerError`.
        """
        del memo
        lock = self._locks.setdefault(keys.address, asyncio.Lock())
        async with lock:
            for attempt in range(MAX_REBUILDS + 1):
                try:
                    signed = await self.prepare_transfer(keys, recipient, amount)
                except RpcError as exc:
                    # Nothing is signed or sent yet, so trying again is always safe.
                    # The node's coin index can lag just behind our previous
                    # payment; the dry run then names a coin version already spent.
                    if _STALE_OBJECT in exc.rpc_message and attempt < MAX_REBUILDS:
                        await asyncio.sleep(self.config.poll_interval)
                        continue
                    raise
                try:
                    block = await self.submit(signed)
                except TransactionRejected as exc:
                    if exc.can_never_land and attempt < MAX_REBUILDS:
                        # Give the node's coin index a moment to catch up.
                        await asyncio.sleep(self.config.poll_interval)
                        continue
                    raise
                return block.digest
        raise AssertionError("unreachable")  # pragma: no cover

    async def prepare_transfer(
        self, keys: KeyPair, recipient: str, amount: int
    ) -> SignedTransaction:
        """Build and sign a payment without sending it (gas priced by a dry run).

        Raises :class:`InsufficientFunds` when the sender's coins cannot
        cover ``amount`` plus the gas budget.
        """
        if not is_address(recipient):
            raise LedgerError("invalid_recipient", f"{recipient!r} is not an IOTA address")
        if recipient == keys.address:
            raise LedgerError("invalid_recipient", "a payment to oneself pays nothing")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= U64_MAX:
            raise LedgerError("invalid_amount", "the amount must be a positive integer of nanos")

        def build(
            payment: list[ObjectRef], merges: list[ObjectRef], price: int, budget: int
        ) -> TransactionData:
            return build_transfer(
                sender=keys.address,
                recipient=recipient,
                amount=amount,
                gas_payment=payment,
                merge_coins=merges,
                gas_price=price,
                gas_budget=budget,
            )

        return await self._fund_and_sign(
            keys, amount, build, dry_run_units=DRY_RUN_BUDGET_UNITS, what=str(amount)
        )

    def plan_batches(self, payments: Sequence[Payment]) -> list[tuple[Payment, ...]]:
        """Cut ``payments`` into the fewest transactions :meth:`prepare_batch` accepts.

        In the given order and deterministic (see :func:`.batch.plan_batches`);
        within :data:`.batch.PLANNING_LIMITS` when up to ``config.max_coins``
        coins fund each transaction.
        """
        return plan_batches(payments, coins=self.config.max_coins)

    async def prepare_batch(self, keys: KeyPair, payments: Sequence[Payment]) -> SignedTransaction:
        """Build and sign one transaction paying every payment, without sending it.

        The layout is the TypeScript SDK's (:mod:`.batch`); gas is priced by a
        dry run, as for one payment. The digest is known before sending: store
        ``signed.to_json()`` as the batch's intent, then :meth:`submit` it (again
        after a crash: the same bytes land at most once). A batch pays all of
        its payments or none of them.

        Raises :class:`LedgerError` naming the first invalid payment
        (``invalid_payments``, ``invalid_recipient``, ``invalid_amount``),
        :class:`~.batch.BatchTooLarge` when the payments do not fit in one
        transaction (plan with :meth:`plan_batches`), :class:`InsufficientFunds`
        when the sender's coins cannot cover the total plus gas.
        """
        batch = check_payments(payments, sender=keys.address)
        capacity = batch_capacity(PLANNING_LIMITS, coins=self.config.max_coins)
        if len(batch) > capacity:
            raise BatchTooLarge(
                "payments",
                f"payments: {len(batch)} do not fit in one transaction (at most {capacity});"
                " cut them with plan_batches",
            )
        total = sum(p.amount for p in batch)

        def build(
            payment: list[ObjectRef], merges: list[ObjectRef], price: int, budget: int
        ) -> TransactionData:
            return build_batch(
                sender=keys.address,
                payments=batch,
                gas_payment=payment,
                merge_coins=merges,
                gas_price=price,
                gas_budget=budget,
            )

        dry_run_units = DRY_RUN_BUDGET_UNITS + DRY_RUN_BUDGET_UNITS_PER_PAYMENT * len(batch)
        return await self._fund_and_sign(
            keys, total, build, dry_run_units=dry_run_units, what=f"{len(batch)} payments, {total}"
        )

    async def _fund_and_sign(
        self,
        keys: KeyPair,
        amount: int,
        build: _Builder,
        *,
        dry_run_units: int,
        what: str,
    ) -> SignedTransaction:
        """Pick coins for ``amount`` + gas, dry-run for the budget, build with it and sign."""
        price = await self.rpc.get_reference_gas_price()
        min_budget = BASE_TX_COST_FIXED_UNITS * price
        coins = [
            c for c in await self.rpc.get_all_coins(keys.address) if is_iota_coin_type(c.coin_type)
        ]
        total = sum(c.balance for c in coins)
        if total < amount + min_budget:
            raise InsufficientFunds(
                f"{keys.address} holds {total} nanos; {what} + at least {min_budget} gas needed"
            )
        dry_budget = min(total - amount, dry_run_units * price, MAX_TX_GAS)
        draft = self._build(build, coins=coins, amount=amount, price=price, budget=dry_budget)
        dry = await self.rpc.dry_run(_b64encode(encode_transaction_data(draft)))
        if not dry.succeeded or dry.gas_used is None:
            if dry.error is not None and dry.error.startswith("InsufficientGas"):
                if dry_budget < dry_run_units * price:
                    # The dry run's budget was all that is left after the amount.
                    raise InsufficientFunds(
                        f"{keys.address} holds {total} nanos: not enough for {what}"
                        f" and the gas ({dry_budget} nanos were not enough for gas)"
                    )
                raise LedgerError(
                    "gas_estimate_failed", f"the payment needs more than {dry_budget} nanos of gas"
                )
            raise LedgerError("dry_run_failed", f"the dry run failed: {dry.error}")
        budget = gas_budget_from_dry_run(
            dry.gas_used, price=price, margin_percent=self.config.gas_margin_percent
        )
        tx = self._build(build, coins=coins, amount=amount, price=price, budget=budget)
        # The planner keeps a margin under every limit; this is the node's own rule.
        check_limits(tx)
        return SignedTransaction.sign(keys, tx)

    def _build(
        self, build: _Builder, *, coins: Sequence[Coin], amount: int, price: int, budget: int
    ) -> TransactionData:
        payment, merges = select_coins(
            coins, amount=amount, budget=budget, max_coins=self.config.max_coins
        )
        return build(payment, merges, price, budget)

    async def submit(self, signed: SignedTransaction) -> TransactionBlock:
        """Execute signed payment bytes (one transfer or a batch) until their outcome is known.

        Safe to call again, also after a crash with the bytes restored by
        :meth:`SignedTransaction.from_json`: the same bytes land at most once.
        Returns the checkpointed transaction after checking that it succeeded
        and that every recipient's balance grew by exactly what the signed
        bytes pay it. Raises :class:`TransferFailed` (executed, paid nothing),
        :class:`TransactionRejected` (not executed; ``can_never_land`` tells
        whether these bytes are dead for ever) or :class:`TransferInDoubt`.
        """
        try:
            payments = payment_terms(signed.data)
        except BcsError as exc:
            raise LedgerError("not_a_payment", f"{signed.digest}: {exc}") from exc
        block = await self._execute_until_known(signed)
        self._check_effects(block, signed, payments)
        if block.checkpoint is None:
            final = await self.rpc.wait_for_checkpoint(
                signed.digest,
                max_wait=self.config.checkpoint_timeout,
                poll_interval=self.config.poll_interval,
            )
            if final is None:
                raise TransferInDoubt(
                    "not_checkpointed",
                    signed.digest,
                    f"executed, but not in a checkpoint after {self.config.checkpoint_timeout} s",
                    signed=signed,
                )
            self._check_effects(final, signed, payments)
            block = final
        return block

    async def _execute_until_known(self, signed: SignedTransaction) -> TransactionBlock:
        deadline = time.monotonic() + self.config.submit_deadline
        delay = self.config.poll_interval
        uncertain = False  # an earlier attempt may have been executed
        while True:
            try:
                return await self.rpc.execute(signed.tx_bytes_b64, [signed.signature])
            except RpcError as exc:
                if not exc.transient:
                    known = await self._find(signed.digest)
                    if known is not None:
                        return known
                    dead = await self._can_never_land(signed)
                    if uncertain and not dead:
                        raise TransferInDoubt(
                            "outcome_unknown",
                            signed.digest,
                            "a retry after a timeout was refused: " + exc.rpc_message,
                            signed=signed,
                        ) from exc
                    raise TransactionRejected(
                        signed.digest, exc.rpc_message, can_never_land=dead
                    ) from exc
            except NodeUnavailable:
                pass
            # The outcome is unknown: the node may have executed the bytes.
            uncertain = True
            known = await self._find(signed.digest)
            if known is not None:
                return known
            if time.monotonic() >= deadline:
                raise TransferInDoubt(
                    "outcome_unknown",
                    signed.digest,
                    f"no answer from the node within {self.config.submit_deadline} s",
                    signed=signed,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            # Loop: re-submit exactly the same bytes.

    async def _find(self, digest: str) -> TransactionBlock | None:
        try:
            return await self.rpc.get_transaction_block(digest)
        except NodeUnavailable:
            return None

    async def _can_never_land(self, signed: SignedTransaction) -> bool:
        """True when another transaction consumed a coin version these bytes spend."""
        tx = signed.data
        refs = list(tx.gas_data.payment) + [
            arg.ref for arg in tx.kind.inputs if isinstance(arg, ImmOrOwnedObject)
        ]
        try:
            states = await self.rpc.multi_get_objects([ref.object_id for ref in refs])
        except (NodeUnavailable, RpcError):
            return False
        consumed = any(
            state is not None
            and state.version > ref.version
            and state.previous_transaction != signed.digest
            for ref, state in zip(refs, states, strict=True)
        )
        # Ask once more: had our transaction consumed the coin meanwhile, the
        # node would know it now that it shows the coin's newer version.
        return consumed and await self._find(signed.digest) is None

    @staticmethod
    def _check_effects(
        block: TransactionBlock, signed: SignedTransaction, payments: Sequence[Payment]
    ) -> None:
        if block.digest != signed.digest:
            raise TransferInDoubt(
                "effects_mismatch", signed.digest, f"the node answered for {block.digest}"
            )
        if block.status is None or block.balance_changes is None:
            raise TransferInDoubt(
                "effects_mismatch", signed.digest, "the node's answer has no effects"
            )
        if not block.succeeded:
            raise TransferFailed(signed.digest, block.error or "unknown error")
        if block.sender is not None and block.sender != signed.data.sender:
            raise TransferInDoubt(
                "effects_mismatch", signed.digest, f"the node reports sender {block.sender}"
            )
        for recipient, amount in _sums_by_recipient(payments).items():
            received = block.net_change(recipient)
            if received != amount:
                raise TransferInDoubt(
                    "effects_mismatch",
                    signed.digest,
                    f"the balance of {recipient} changed by {received}, not {amount}",
                )

    # --- reading ---

    async def lookup(self, tx_id: str) -> TransferRecord | None:
        """What the node says about ``tx_id``; ``None`` when it does not know it.

        ``status`` is ``pending`` until the transaction is in a checkpoint.
        For a payment built here (one transfer or a batch), what it pays is
        read from the signed bytes the node returns (checked to hash to
        ``tx_id``) and must agree with the balance changes: ``payments`` lists
        every (recipient, amount) in the signed order, ``amount`` is their sum
        and ``recipient`` the one recipient, or ``""`` when several are paid.
        For any other transaction the recipient is the one address (other
        than the sender) whose IOTA balance grew; such transactions paying
        several addresses are refused with code ``not_a_transfer``. A failed
        transaction paid nothing: amount 0, no payments, and the recipient
        it named when there was one.
        """
        if not is_transaction_digest(tx_id):
            raise LedgerError("invalid_tx_id", f"{tx_id!r} is not a transaction digest")
        block = await self.rpc.get_transaction_block(tx_id)
        if block is None:
            return None
        return self._record(block)

    @staticmethod
    def _record(block: TransactionBlock) -> TransferRecord:
        if block.status is None or block.balance_changes is None or block.sender is None:
            raise LedgerError("malformed_response", "the node's answer lacks effects or input")
        signed = _signed_payments(block)
        when = _datetime_from_ms(block.timestamp_ms)
        if not block.succeeded:
            if signed is not None:
                recipient = _only_recipient(signed)
            else:
                recipient, _intended = _intended_transfer(block.raw)
            return TransferRecord(
                tx_id=block.digest,
                sender=block.sender,
                recipient=recipient,
                amount=0,
                status=TxStatus.FAILURE,
                time=when,
            )
        status = TxStatus.SUCCESS if block.checkpoint is not None else TxStatus.PENDING
        received: dict[str, int] = {}
        for change in block.balance_changes:
            if change.address is None or change.address == block.sender:
                continue
            if is_iota_coin_type(change.coin_type):
                received[change.address] = received.get(change.address, 0) + change.amount
        paid = {address: value for address, value in received.items() if value > 0}
        if signed is not None:
            if paid != _sums_by_recipient(signed):
                raise LedgerError(
                    "effects_mismatch",
                    f"{block.digest}: the balance changes are not the signed payments",
                )
            return TransferRecord(
                tx_id=block.digest,
                sender=block.sender,
                recipient=_only_recipient(signed),
                amount=sum(p.amount for p in signed),
                status=status,
                time=when,
                payments=signed,
            )
        if len(paid) > 1:
            raise LedgerError("not_a_transfer", f"{block.digest} pays {len(paid)} addresses")
        recipient, amount = next(iter(paid.items())) if paid else ("", 0)
        return TransferRecord(
            tx_id=block.digest,
            sender=block.sender,
            recipient=recipient,
            amount=amount,
            status=status,
            time=when,
            payments=(Payment(recipient, amount),) if paid else (),
        )

    async def verify_incoming(
        self,
        tx_id: str,
        *,
        expected_sender: str,
        recipient: str,
        min_amount: int,
        require_checkpoint: bool = True,
    ) -> TransferRecord:
        """Check on chain that ``expected_sender`` paid ``recipient`` at least ``min_amount``.

        Returns the record with the amount actually received. Whether the
        digest was used before is the caller's check (its own database).
        Raises :class:`PaymentNotVerified`.
        """
        sender_address, recipient_address = _claim_addresses(
            tx_id, expected_sender, recipient, min_amount
        )
        block = await self._block_with_effects(tx_id)
        received = _received_from(block, tx_id, sender_address, recipient_address, min_amount)
        # Last, so that a payment that can never pass is refused as final now
        # instead of being retried until its checkpoint arrives.
        if require_checkpoint and block.checkpoint is None:
            raise PaymentNotVerified(
                "tx_pending", f"{tx_id} is not in a checkpoint yet", retryable=True
            )
        return TransferRecord(
            tx_id=block.digest,
            sender=sender_address,  # what _received_from found the block's sender to be
            recipient=recipient_address,
            amount=received,
            status=TxStatus.SUCCESS if block.checkpoint is not None else TxStatus.PENDING,
            time=_datetime_from_ms(block.timestamp_ms),
        )

    async def _block_with_effects(self, tx_id: str) -> TransactionBlock:
        """The node's record of ``tx_id`` with its effects and input, for :meth:`verify_incoming`.

        Every refusal here is retryable: the node may be down, behind, or not
        have indexed the transaction yet, none of which says the payment is bad.
        """
        try:
            block = await self.rpc.get_transaction_block(tx_id)
        except NodeUnavailable as exc:
            raise PaymentNotVerified("node_unavailable", str(exc), retryable=True) from exc
        if block is None:
            raise PaymentNotVerified(
                "tx_not_found", f"the node does not know {tx_id}", retryable=True
            )
        if block.status is None or block.balance_changes is None or block.sender is None:
            raise PaymentNotVerified(
                "node_unavailable", "the node's answer lacks effects or input", retryable=True
            )
        return block


if TYPE_CHECKING:

    def _implements_ledger(ledger: IotaLedger) -> Ledger:
        return ledger
