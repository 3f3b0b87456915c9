"""The grid's rules: market clearing, settlement, ledgers, audit log.

Nothing in this package imports a web framework or a database driver; the
API and storage layers call into it with plain values.
"""
