"""Anchors: each ``anchor`` entry against the roots and ``audit_anchors``, and against IOTA."""

from __future__ import annotations

from typing import Any

import orjson

from grid_server.domain.audit_roots import RootFields, make_batch
from p2p_energy_client.ledger.base import LedgerError
from p2p_energy_client.ledger.iota.notarization import (
    NotarizationError,
    read_anchored_payload,
    read_past_state,
    read_state,
)
from p2p_energy_client.ledger.iota.rpc import IotaRpcClient

from .findings import Findings, VerifyReport

TABLE = "audit_anchors"


class AnchorEntries:
    """Each ``anchor`` entry's batch root and notarized bytes are recomputed from the roots it
    names; anchors follow each other in one notarization object, one state version apart
    (the first creates it); its ``audit_anchors`` row holds the same fields. A row that no
    anchor entry of the verified range made is reported at the end.
    """

    def __init__(
        self, findings: Findings, rows: dict[int, Any], roots: list[RootFields], whole: bool
    ) -> None:
        self.findings = findings
        self.rows = rows  # by the anchor entry's seq; checked rows are taken out
        self.roots = roots  # the root entries seen so far
        self.whole = whole  # verifying from the first entry: every root is known
        self.records: list[tuple[int, dict[str, Any]]] = []

    def check(self, seq: int, body: bytes) -> None:
        record = orjson.loads(body)
        label = f"seq {seq} (anchor of roots {record['first_root_seq']}–{record['last_root_seq']})"
        self._batch(seq, record, label)
        self._follows(seq, record, label)
        self.records.append((seq, record))
        self._row(seq, record, label)

    def _batch(self, seq: int, record: dict[str, Any], label: str) -> None:
        first, last = record["first_root_seq"], record["last_root_seq"]
        members = [r for r in self.roots if first <= r.seq <= last]
        if members and members[0].seq == first and members[-1].seq == last:
            batch = make_batch(members)
            if (
                batch.batch_root.hex() != record["batch_root"]
                or batch.payload.hex() != record["payload"]
            ):
                self.findings.stop(
                    seq, "log_entries", label, "the anchored batch does not match the roots"
                )
        elif self.whole:
            self.findings.stop(seq, "log_entries", label, "names roots the log does not hold")

    def _follows(self, seq: int, record: dict[str, Any], label: str) -> None:
        if not self.records:
            if self.whole and record["state_version"] != 0:
                self.findings.problem(
                    seq, "log_entries", label, "the first anchor must create the object"
                )
            return
        before = self.records[-1][1]
        if record["object_id"] != before["object_id"]:
            self.findings.problem(
                seq, "log_entries", label, "anchors in another notarization object"
            )
        elif record["state_version"] != before["state_version"] + 1:
            self.findings.problem(
                seq,
                "log_entries",
                label,
                f"state version {record['state_version']} does not follow "
                f"{before['state_version']}: an anchor is missing from the log",
            )

    def _row(self, seq: int, record: dict[str, Any], label: str) -> None:
        row = self.rows.pop(seq, None)
        if row is None:
            self.findings.problem(seq, TABLE, label, "is missing from the table")
            return
        have = {
            "first_root_seq": int(row.first_root_seq),
            "last_root_seq": int(row.last_root_seq),
            "batch_root": bytes(row.batch_root).hex(),
            "payload": bytes(row.payload).hex(),
            "ledger": row.ledger,
            "network": row.network,
            "package": row.package,
            "object_id": row.object_id,
            "digest": row.digest,
            "object_version": int(row.object_version),
            "state_version": int(row.state_version),
        }
        for key, value in have.items():
            if record.get(key) != value:
                self.findings.problem(
                    seq,
                    TABLE,
                    label,
                    f"{key} is {value!r} in the table, the log says {record.get(key)!r}",
                )
                return

    def leftovers(self, first_seq: int, last_seq: int) -> None:
        """Rows of the verified range that no anchor entry made."""
        for seq in sorted(self.rows):
            if first_seq <= seq <= last_seq:
                self.findings.problem(
                    seq, TABLE, f"log seq {seq}", "names no anchor entry of the log"
                )


class AnchorsOnChain:
    """What the IOTA node holds: the grid's notarization object, owned by the grid's address,
    holds the latest anchored bytes (or held them at the recorded version); with ``every``,
    each earlier anchoring transaction is looked up too. Since the anchored bytes name the
    chain hash of the batch's last root, this ties the whole log up to that root to IOTA.
    """

    def __init__(self, findings: Findings, report: VerifyReport, owner: str | None) -> None:
        self.findings = findings
        self.report = report
        self.owner = owner  # the grid's address, as its ledger head records it

    async def check(
        self, node: str, records: list[tuple[int, dict[str, Any]]], *, every: bool
    ) -> None:
        seq, latest = records[-1]
        label = f"seq {seq} (anchor {latest['digest']})"
        async with IotaRpcClient(node) as rpc:
            try:
                if not await self._latest(rpc, seq, latest, label):
                    return
                if every:
                    # A failure to reach the node names the entry being looked up.
                    for seq, record in records[:-1]:
                        if not await self._earlier(rpc, seq, record):
                            return
            except (NotarizationError, LedgerError) as exc:
                self.findings.problem(seq, "iota", label, f"cannot be confirmed on chain: {exc}")

    async def _latest(
        self, rpc: IotaRpcClient, seq: int, latest: dict[str, Any], label: str
    ) -> bool:
        state = await read_state(rpc, latest["object_id"])
        if self.owner is not None and state.owner != self.owner:
            self.findings.problem(
                seq,
                "iota",
                label,
                f"the object is owned by {state.owner}, not the grid ({self.owner})",
            )
            return False
        if state.state_version < latest["state_version"]:
            self.findings.problem(
                seq,
                "iota",
                label,
                f"the chain shows state version {state.state_version}, the log "
                f"{latest['state_version']}",
            )
            return False
        if state.state_version > latest["state_version"]:
            state = await read_past_state(rpc, latest["object_id"], latest["object_version"])
        if state.data != bytes.fromhex(latest["payload"]):
            self.findings.problem(
                seq, "iota", label, "the notarized bytes on chain differ from the log's anchor"
            )
            return False
        self.report.anchors_checked_on_chain += 1
        return True

    async def _earlier(self, rpc: IotaRpcClient, seq: int, record: dict[str, Any]) -> bool:
        on_chain = await read_anchored_payload(
            rpc, record["digest"], record["object_id"], record["object_version"]
        )
        if on_chain != bytes.fromhex(record["payload"]):
            self.findings.problem(
                seq,
                "iota",
                f"seq {seq} (anchor {record['digest']})",
                "the notarized bytes on chain differ from the log's anchor",
            )
            return False
        self.report.anchors_checked_on_chain += 1
        return True


__all__ = ["AnchorEntries", "AnchorsOnChain"]
