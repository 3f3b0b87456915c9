"""The engine stays pure: no web framework or database behind its imports."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "aiosqlite", "asyncpg")


def test_engine_imports_no_web_or_database_library() -> None:
    probe = (
        "import sys, grid_server.domain.market, grid_server.domain.settlement, "
        "grid_server.domain.market.jsonio, grid_server.domain.market.synthetic; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = set(done.stdout.split())
    assert "numpy" in loaded  # the probe does see what the engine loads
    assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)
