"""The local ledger in the grid's database: accounts, hash-chained entries, minting.

Every function works inside the caller's transaction. Writers of the ledger
(the envelope writer's transfers and payments, the payout worker, minting)
lock the ledger head (``SELECT … FOR UPDATE`` on PostgreSQL) before the
accounts, and append their audit entries (the chain head) last, as every
writer does (the whole order: :mod:`grid_server.storage.audit_log`), so
ledger changes are serialised without deadlocks. On top of that a debit is a
conditional ``UPDATE … WHERE balance >= amount AND seq < :seq``: a balance
can never go negative even if a future code path forgot the lock, and the
``CHECK (balance >= 0)`` constraint backs it in the database itself.

Rules (signature, sequence number, reuse, funds) are
:func:`grid_server.domain.ledger.check_transfer`; the record format and the
entry hash are :mod:`p2p_energy_client.ledger.local`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.ledger import TransferRefused, check_transfer, verify_chain
from grid_server.storage import payment_queries as pq
from grid_server.storage.db import Database
from grid_server.storage.schema import ledger_accounts, ledger_entries, ledger_heads
from p2p_energy_client.crypto import b64encode
from p2p_energy_client.ledger.local import (
    GENESIS_HASH,
    LedgerRecord,
    SignedTransfer,
    ledger_entry_hash,
    mint_record,
    time_ms,
)
from p2p_energy_client.models import LedgerEntry
from p2p_energy_client.protocol import ErrorCode, canonical_json


class LedgerHeadMismatch(RuntimeError):
    """The database belongs to another grid key (or another ledger kind)."""


@dataclass(slots=True)
class Head:
    kind: str
    address: str
    entries: int
    hash: bytes
    minted: int
    mints: int


def entry_time(now: datetime) -> datetime:
    """Entry times are hashed to the millisecond; store exactly that."""
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def entry_view(row: Any) -> LedgerEntry:
    return LedgerEntry(
        index=int(row.index),
        tx_id=row.tx_id,
        kind=row.kind,
        sender=row.sender,
        recipient=row.recipient,
        amount=int(row.amount),
        seq=int(row.seq),
        memo=row.memo,
        time=row.created_at,
        public_key=None if row.public_key is None else b64encode(bytes(row.public_key)),
        signature=None if row.signature is None else b64encode(bytes(row.signature)),
        prev_hash=bytes(row.prev_hash).hex(),
        hash=bytes(row.hash).hex(),
    )


class LocalLedgerStore:
    def __init__(self, grid_id: str, db: Database) -> None:
        self.grid_id = grid_id
        self.db = db

    # --- the head -------------------------------------------------------------------

    async def ensure_head(
        self, conn: AsyncConnection, kind: str, address: str, now: datetime
    ) -> Head:
        """Create the head on first start; refuse a different grid key later."""
        head = await self.head(conn)
        if head is None:
            await conn.execute(
                insert(ledger_heads).values(
                    grid=self.grid_id,
                    kind=kind,
                    address=address,
                    entries=0,
                    hash=GENESIS_HASH,
                    minted=0,
                    mints=0,
                    created_at=now,
                )
            )
            return Head(kind, address, 0, GENESIS_HASH, 0, 0)
        if head.address != address:
            raise LedgerHeadMismatch(
                f"this database belongs to the grid key of {head.address}; the configured "
                f"ledger key is {address}. Start with the grid's own key (P2P_LEDGER_KEY or "
                "the key file)."
            )
        if head.kind != kind:
            # Switching ledgers (local → iota) keeps the address and the history.
            await conn.execute(
                update(ledger_heads).where(ledger_heads.c.grid == self.grid_id).values(kind=kind)
            )
            head.kind = kind
        return head

    async def head(self, conn: AsyncConnection, *, lock: bool = False) -> Head | None:
        query = select(ledger_heads).where(ledger_heads.c.grid == self.grid_id)
        if lock and self.db.is_postgres:
            query = query.with_for_update()
        row = (await conn.execute(query)).one_or_none()
        if row is None:
            return None
        return Head(
            row.kind,
            row.address,
            int(row.entries),
            bytes(row.hash),
            int(row.minted),
            int(row.mints),
        )

    async def _locked_head(self, conn: AsyncConnection) -> Head:
        head = await self.head(conn, lock=True)
        if head is None:
            raise RuntimeError("the ledger head is missing (the grid was never opened)")
        return head

    # --- reads ----------------------------------------------------------------------

    async def account(self, conn: AsyncConnection, address: str) -> tuple[int, int]:
        """``(balance, last transfer seq)``; an unknown address has ``(0, 0)``."""
        row = (
            await conn.execute(
                select(ledger_accounts.c.balance, ledger_accounts.c.seq).where(
                    ledger_accounts.c.address == address
                )
            )
        ).one_or_none()
        return (0, 0) if row is None else (int(row.balance), int(row.seq))

    async def has_tx(self, conn: AsyncConnection, tx_id: str) -> bool:
        found = await conn.scalar(
            select(ledger_entries.c.index).where(ledger_entries.c.tx_id == tx_id)
        )
        return found is not None

    async def entry(self, conn: AsyncConnection, tx_id: str) -> LedgerEntry | None:
        row = (
            await conn.execute(select(ledger_entries).where(ledger_entries.c.tx_id == tx_id))
        ).one_or_none()
        return None if row is None else entry_view(row)

    async def entries(
        self,
        conn: AsyncConnection,
        *,
        after: int = 0,
        limit: int = 1000,
        address: str | None = None,
    ) -> list[LedgerEntry]:
        query = select(ledger_entries).where(ledger_entries.c.index > after)
        if address is not None:
            query = query.where(
                (ledger_entries.c.sender == address) | (ledger_entries.c.recipient == address)
            )
        rows = await conn.execute(query.order_by(ledger_entries.c.index).limit(limit))
        return [entry_view(r) for r in rows]

    async def balances(self, conn: AsyncConnection) -> list[tuple[str, int, int]]:
        rows = await conn.execute(
            select(ledger_accounts.c.address, ledger_accounts.c.balance, ledger_accounts.c.seq)
            .where(ledger_accounts.c.balance > 0)
            .order_by(ledger_accounts.c.balance.desc(), ledger_accounts.c.address)
        )
        return [(r.address, int(r.balance), int(r.seq)) for r in rows]

    async def totals(self, conn: AsyncConnection) -> tuple[int, int]:
        """``(sum of all balances, sum minted)``: equal, always."""
        total = await conn.scalar(select(func.coalesce(func.sum(ledger_accounts.c.balance), 0)))
        head = await self.head(conn)
        return int(total or 0), 0 if head is None else head.minted

    # --- writes ---------------------------------------------------------------------

    async def lock_head(self, conn: AsyncConnection) -> Head:
        """Lock and load the ledger head for a transaction that writes several entries.

        Pass it to :meth:`apply_transfer` as ``head`` and store it with
        :meth:`save_head` before the transaction commits.
        """
        return await self._locked_head(conn)

    async def save_head(self, conn: AsyncConnection, head: Head) -> None:
        await conn.execute(
            update(ledger_heads)
            .where(ledger_heads.c.grid == self.grid_id)
            .values(entries=head.entries, hash=head.hash, minted=head.minted, mints=head.mints)
        )

    async def apply_transfer(
        self,
        conn: AsyncConnection,
        signed: SignedTransfer,
        *,
        signer: bytes | None,
        now: datetime,
        path: str = "transfer",
        head: Head | None = None,
        known_new: bool = False,
    ) -> LedgerEntry:
        """Check and apply a signed transfer; raises :class:`TransferRefused`.

        The debit is one conditional ``UPDATE`` (enough balance, sequence
        number above the last); only when it changes nothing is the account
        read, to say why. ``head``: see :meth:`lock_head` (without it the head
        is locked, loaded and saved here). ``known_new``: the caller checked
        already that the transaction id was never applied.
        """
        record = signed.record
        sender = signed.sender
        check_transfer(
            signed,
            grid=self.grid_id,
            signer=signer,
            balance=None,
            last_seq=None,
            already_applied=False if known_new else await self.has_tx(conn, record.tx_id),
            path=path,
        )
        own_head = head is None
        locked = await self._locked_head(conn) if head is None else head
        debited = await conn.execute(
            update(ledger_accounts)
            .where(
                ledger_accounts.c.address == sender,
                ledger_accounts.c.balance >= record.amount,
                ledger_accounts.c.seq < record.seq,
            )
            .values(
                balance=ledger_accounts.c.balance - record.amount,
                seq=record.seq,
                updated_at=now,
            )
        )
        if debited.rowcount != 1:
            balance, last_seq = await self.account(conn, sender)
            check_transfer(
                signed,
                grid=self.grid_id,
                signer=signer,
                balance=balance,
                last_seq=last_seq,
                already_applied=False,
                path=path,
            )
            raise TransferRefused(
                ErrorCode.INSUFFICIENT_FUNDS,
                f"{path}.record.amount",
                "the balance does not cover the transfer",
            )
        await self._credit(conn, record.recipient, record.amount, now)
        entry = await self._append(
            conn, locked, record, public_key=signed.public_key, signature=signed.signature, now=now
        )
        if own_head:
            await self.save_head(conn, locked)
        return entry

    async def apply_batch(
        self,
        conn: AsyncConnection,
        transfers: Sequence[SignedTransfer],
        *,
        signer: bytes,
        now: datetime,
    ) -> list[LedgerEntry]:
        """Check and apply many transfers, in order, in the caller's transaction.

        All or none: the first one refused raises :class:`TransferRefused`
        (its field names its place, ``transfers[k]``) and the caller rolls the
        transaction back. Accounts are read once and written once (set-based);
        the balance check of each transfer sees the ones before it.
        """
        head = await self._locked_head(conn)
        ids = [t.tx_id for t in transfers]
        applied = await pq.ledger_tx_ids(conn, ids)
        addresses = {t.sender for t in transfers} | {t.record.recipient for t in transfers}
        found = await pq.accounts(conn, addresses, lock=self.db.is_postgres)
        accounts = {a: list(found.get(a, (0, 0))) for a in addresses}
        rows = []
        for k, signed in enumerate(transfers):
            record = signed.record
            balance, last_seq = accounts[signed.sender]
            check_transfer(
                signed,
                grid=self.grid_id,
                signer=signer,
                balance=balance,
                last_seq=last_seq,
                already_applied=ids[k] in applied,
                path=f"transfers[{k}]",
            )
            accounts[signed.sender] = [balance - record.amount, record.seq]
            accounts[record.recipient][0] += record.amount
            applied.add(ids[k])
            rows.append(
                next_entry(
                    head, record, public_key=signed.public_key, signature=signed.signature, now=now
                )
            )
        return await self._write(
            conn, head, accounts=accounts, known=set(found), rows=rows, now=now
        )

    async def mint_many(
        self,
        conn: AsyncConnection,
        grants: Sequence[tuple[str, int]],
        memo: str | None,
        now: datetime,
    ) -> list[LedgerEntry]:
        """:meth:`mint` for many ``(recipient, amount)`` in the caller's transaction (set-based)."""
        head = await self._locked_head(conn)
        found = await pq.accounts(conn, {a for a, _ in grants}, lock=self.db.is_postgres)
        accounts = {a: list(found.get(a, (0, 0))) for a, _ in grants}
        rows = []
        for recipient, amount in grants:
            record = mint_record(self.grid_id, recipient, amount, head.mints + 1, memo)
            accounts[recipient][0] += amount
            rows.append(next_entry(head, record, public_key=None, signature=None, now=now))
        return await self._write(
            conn, head, accounts=accounts, known=set(found), rows=rows, now=now
        )

    async def _write(
        self,
        conn: AsyncConnection,
        head: Head,
        *,
        accounts: dict[str, list[int]],
        known: set[str],
        rows: list[dict[str, Any]],
        now: datetime,
    ) -> list[LedgerEntry]:
        """Store accounts (``known`` ones updated, the others inserted), entries and the head."""
        saved = [(a, b, s) for a, (b, s) in sorted(accounts.items())]
        await pq.save_accounts(
            conn, [r for r in saved if r[0] in known], [r for r in saved if r[0] not in known], now
        )
        await pq.insert_ledger_entries(conn, rows)
        await self.save_head(conn, head)
        return [row_view(r) for r in rows]

    async def mint(
        self, conn: AsyncConnection, recipient: str, amount: int, memo: str | None, now: datetime
    ) -> LedgerEntry:
        """New money for ``recipient`` (operator only)."""
        head = await self._locked_head(conn)
        record = mint_record(self.grid_id, recipient, amount, head.mints + 1, memo)
        await self._credit(conn, recipient, amount, now)
        entry = await self._append(conn, head, record, public_key=None, signature=None, now=now)
        await self.save_head(conn, head)
        return entry

    async def _credit(
        self, conn: AsyncConnection, address: str, amount: int, now: datetime
    ) -> None:
        # The ledger head lock serialises writers, so update-then-insert cannot race.
        credited = await conn.execute(
            update(ledger_accounts)
            .where(ledger_accounts.c.address == address)
            .values(balance=ledger_accounts.c.balance + amount, updated_at=now)
        )
        if credited.rowcount == 0:
            await conn.execute(
                insert(ledger_accounts).values(
                    address=address, balance=amount, seq=0, updated_at=now
                )
            )

    async def _append(
        self,
        conn: AsyncConnection,
        head: Head,
        record: LedgerRecord,
        *,
        public_key: bytes | None,
        signature: bytes | None,
        now: datetime,
    ) -> LedgerEntry:
        row = next_entry(head, record, public_key=public_key, signature=signature, now=now)
        await conn.execute(insert(ledger_entries).values(**row))
        return entry_view(_Row(row))


def next_entry(
    head: Head,
    record: LedgerRecord,
    *,
    public_key: bytes | None,
    signature: bytes | None,
    now: datetime,
) -> dict[str, Any]:
    """The ``ledger_entries`` row that follows ``head``, and ``head`` moved past it."""
    when = entry_time(now)
    index = head.entries + 1
    digest = ledger_entry_hash(head.hash, index, record.tx_digest, signature or b"", time_ms(when))
    row = {
        "index": index,
        "tx_id": record.tx_id,
        "kind": record.kind,
        "sender": record.sender,
        "recipient": record.recipient,
        "amount": record.amount,
        "seq": record.seq,
        "memo": record.memo,
        "public_key": public_key,
        "signature": signature,
        "prev_hash": head.hash,
        "hash": digest,
        "created_at": when,
    }
    minted = record.amount if record.kind == "mint" else 0
    head.entries, head.hash = index, digest
    head.minted += minted
    head.mints += 1 if minted else 0
    return row


def log_item(entry: LedgerEntry) -> tuple[str, str, bytes]:
    """The audit log item ``(kind, ref, body)`` of a ledger entry."""
    return ("ledger", entry.tx_id, canonical_json(entry.to_wire()))


def row_view(row: dict[str, Any]) -> LedgerEntry:
    return entry_view(_Row(row))


class _Row:
    """Attribute access to a dict (for :func:`entry_view` of a row just written)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


async def verify_ledger(store: LocalLedgerStore, conn: AsyncConnection) -> dict[str, Any]:
    """Replay the whole chain; compare balances with the entries and the minted total."""
    after = 0
    chain: list[LedgerEntry] = []
    while batch := await store.entries(conn, after=after, limit=10_000):
        chain.extend(batch)
        after = batch[-1].index
    broken = verify_chain(chain, store.grid_id)
    expected: dict[str, int] = {}
    minted = 0
    for entry in chain:
        expected[entry.recipient] = expected.get(entry.recipient, 0) + entry.amount
        if entry.sender is not None:
            expected[entry.sender] = expected.get(entry.sender, 0) - entry.amount
        else:
            minted += entry.amount
    stored = {a: b for a, b, _ in await store.balances(conn)}
    mismatched = sorted(
        a for a in set(expected) | set(stored) if expected.get(a, 0) != stored.get(a, 0)
    )
    total, head_minted = await store.totals(conn)
    head = await store.head(conn)
    ok = (
        broken is None
        and not mismatched
        and total == minted == head_minted
        and (head is None or head.entries == len(chain))
    )
    return {
        "ok": ok,
        "entries": len(chain),
        "first_bad_entry": None if broken is None else {"index": broken[0], "reason": broken[1]},
        "balances_total": total,
        "minted": minted,
        "mismatched_accounts": mismatched[:100],
    }
