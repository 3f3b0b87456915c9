"""The production tests use the shared fixtures (tests/support/fixtures.py)."""
