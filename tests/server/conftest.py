"""The server tests use the shared fixtures of tests/support/fixtures.py (see tests/conftest.py)."""
