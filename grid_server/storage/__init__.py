"""Persistence: SQLAlchemy 2 (async) tables, the queries, and Alembic migrations.

SQL belongs in this package (some write paths of the services still hold theirs).
Schema and engines:
:mod:`.schema`, :mod:`.db`, :mod:`.migrate`. Reads by subject:

* :mod:`.grid_setup`: zones and the utility's price steps;
* :mod:`.participants`: participants, sessions, assets;
* :mod:`.orders` and :mod:`.readings`: what households sent;
* :mod:`.intervals`: intervals and what came of them (zone results, fills,
  line items);
* :mod:`.statements`: statements, their terms and payments, and the one
  definition of *overdue*;
* :mod:`.payments` and :mod:`.ledger`: payments, payouts and the local
  ledger's tables;
* :mod:`.events`: the live events;
* :mod:`.audit_log` and :mod:`.audit_store`: the hash-chained log, its
  roots, receipts, anchors and verification results;
  :mod:`.audit_snapshot`: what ``p2p-grid audit verify`` reads.
"""
