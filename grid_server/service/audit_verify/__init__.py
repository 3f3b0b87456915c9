"""``p2p-grid audit verify``: replay the log and check everything it implies.

In one pass over the log, in sequence order, inside one read snapshot
(:mod:`.runner`), each entry goes to the checkers that concern it:

1. **Chain links** (:class:`.chain.ChainLinks`): sequence numbers have no
   gaps, every entry links to the one before and its hash is recomputed
   from its fields and body.
2. **Interval roots** (:class:`.roots.IntervalRoots`): every ``root``
   entry's range starts right after the previous root's, its Merkle root is
   recomputed from the entries, and the ``audit_roots`` row (root, chunk
   roots, hashes) matches; **anchors** (:class:`.anchors.AnchorEntries`): the
   same for ``anchor`` entries and ``audit_anchors`` (batch root and
   notarized bytes recomputed).
3. **Envelopes** (:class:`.envelopes.EnvelopeEntries`): every envelope is
   opened again from its stored bytes (signature over the canonical payload,
   key and sender, payload rules, this grid), in worker processes on every
   core; its entry's ref must be the payload's ``sender/seq``, and its
   ``envelopes`` row what the entry implies.
4. **Tables** (:class:`.tables.TablesMatchLog`, when the whole log is
   verified): the tables are what the log implies
   (:mod:`grid_server.service.audit_replay`), each settled interval as soon
   as its settlement entry is replayed, the rest at the end; and
   ``chain_heads`` names the last entry.
5. **Anchors on IOTA** (:class:`.anchors.AnchorsOnChain`, with ``node``): the
   grid's notarization object, owned by the grid's address, holds the latest
   anchored bytes (or held them at the recorded version); with
   ``anchors="all"`` every anchoring transaction is looked up too. Since the
   anchored bytes name the chain hash of the batch's last root, this ties
   the whole log up to that root to what IOTA holds.

The *first* inconsistency in log order is reported (a row that no entry
made comes after every attributed one). A broken chain or a bad signature
stops the pass: what follows cannot be trusted to say anything.
"""

from __future__ import annotations

from .envelopes import SignatureChecker
from .findings import VerifyReport
from .runner import read_checkpoint, verify_log, write_checkpoint

__all__ = ["SignatureChecker", "VerifyReport", "read_checkpoint", "verify_log", "write_checkpoint"]
