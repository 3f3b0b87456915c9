"""The grid's own ledger key: where it comes from and how it is kept.

The grid has an account on its ledger (households pay to its address) and
signs payouts to producers with its key: local-ledger transfers, or real
IOTA transactions. The key never goes into the database. In order:

1. ``P2P_LEDGER_KEY`` (setting ``ledger_key``): a 32-byte hex seed or an
   ``iotaprivkey1…`` secret (as IOTA wallets export it) — for production,
   from a secret store;
2. the file ``P2P_LEDGER_KEY_FILE`` (setting ``ledger_key_file``), or by
   default ``p2p-grid-ledger.key`` next to the SQLite database (in the
   working directory with PostgreSQL). Created with mode 0600 and a new
   random key on first start when it does not exist; a key file readable by
   group or others is refused.

The address of the key is recorded in the database (``ledger_heads``) on
first start; a later start with a different key is refused, so a grid never
silently loses its account.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from grid_server.config import Settings
from grid_server.storage.db import Database
from grid_server.storage.files import PrivateFileError, create_private, read_private
from p2p_energy_client.crypto import CryptoError, KeyPair
from p2p_energy_client.ledger.iota import keypair_from_secret

_LOGGER = logging.getLogger(__name__)

KEY_FILE = "p2p-grid-ledger.key"


class LedgerKeyError(RuntimeError):
    """The grid's ledger key is missing, unreadable, unsafe or not the grid's."""


def key_file_path(settings: Settings) -> Path:
    if settings.ledger_key_file is not None:
        return settings.ledger_key_file
    db = Database(settings.database_url) if "://" in settings.database_url else None
    sqlite = db.sqlite_path if db is not None else Path(settings.database_url)
    folder = sqlite.parent if sqlite is not None else Path.cwd()
    return folder / KEY_FILE


def parse_key(text: str, where: str) -> KeyPair:
    try:
        return keypair_from_secret(text.strip())
    except (CryptoError, ValueError) as exc:
        raise LedgerKeyError(f"{where}: not a ledger key ({exc})") from exc


def load_grid_key(settings: Settings, *, create: bool = True) -> tuple[KeyPair, str]:
    """The grid's key and where it came from (an environment setting or a file path)."""
    if settings.ledger_key is not None:
        return parse_key(settings.ledger_key.get_secret_value(), "P2P_LEDGER_KEY"), "setting"
    path = key_file_path(settings)
    if path.exists() or path.is_symlink():
        return _read_key_file(path), str(path)
    if not create:
        raise LedgerKeyError(f"no ledger key: set P2P_LEDGER_KEY or create {path}")
    keys = KeyPair.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole to a private temporary file of a new, unguessable name
    # (O_EXCL, O_NOFOLLOW: never a file or link placed there before), then
    # linked into place: a concurrent starter sees no key file or a complete one.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    create_private(tmp, keys.seed_hex + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:  # another worker was faster: use its key
        return _read_key_file(path), str(path)
    finally:
        tmp.unlink()
    _LOGGER.warning(
        "created the grid's ledger key in %s (address %s); back it up", path, keys.address
    )
    return keys, str(path)


def _read_key_file(path: Path) -> KeyPair:
    try:
        return parse_key(read_private(path), str(path))
    except PrivateFileError as exc:
        raise LedgerKeyError(str(exc)) from exc
