"""Fixtures of the demo's tests."""

from __future__ import annotations

import logging

# Home Assistant's test plugin turns SQLAlchemy's statement log on; it floods
# the output and slows every query of the in-process grid.
logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
