"""HTTP routes of the grid server (FastAPI); no rules live here, only translation."""

from .app import create_app

__all__ = ["create_app"]
