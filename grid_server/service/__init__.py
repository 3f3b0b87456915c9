"""Application services between the HTTP routes and the database.

:mod:`.wiring` builds them all (``build_grid``) and runs them together; each
service gets only what it uses. The group-commit writer (:mod:`.ingest`) and
the payload handlers (:mod:`.handlers`) share the transaction types of
:mod:`.transaction`; the interval cycle is :mod:`.cycle`, payments and the
grid's ledger :mod:`.payments` and :mod:`.payouts`, the audit trail
:mod:`.audit` and :mod:`.audit_anchor`, the operator's tools :mod:`.operator`.
"""
