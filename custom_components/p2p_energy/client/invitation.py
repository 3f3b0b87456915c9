"""Invitations as one string: the grid's address and the one-time code together.

An operator hands a household one thing to paste (or a QR code of it)::

    https://grid.example.org/join#ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23-4567-AB

The part before ``/join`` is the grid's public URL (with any path prefix it
is served under); the fragment after ``#`` is the invitation code. A fragment
is never sent to a server, so opening the link in a browser does not put the
code into anyone's access log. :func:`parse_invitation` also takes the code
on its own (the household then types the grid's URL separately), so old
invitations keep working. Codes are base32 (A-Z, 2-7) in groups of four; case,
spaces and dashes are forgiven.

No I/O and no Home Assistant here: the operator's CLI and dashboard write the
string with :func:`format_invitation`, the integration's config flow reads it
with :func:`parse_invitation`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

JOIN_PATH: Final = "/join"
_CODE = re.compile(r"^[A-Z2-7]{1,4}(?:-[A-Z2-7]{1,4})*$")
MAX_INVITATION_LENGTH: Final = 2048


class InvitationError(ValueError):
    """The text is not an invitation; ``reason`` is a machine-readable key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Invitation:
    """What a pasted invitation holds: the grid's URL (None for a bare code) and the code."""

    grid_url: str | None
    code: str


def normalise_code(text: str) -> str:
    """The code as the grid writes it (and hashes it): upper case, dashed groups of four.

    Case, spaces and dashes as a person types them do not matter.
    """
    raw = "".join(text.split()).upper().replace("-", "")
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def check_code(text: str) -> str:
    """A plausible invitation code, normalised; :class:`InvitationError` otherwise."""
    code = normalise_code(text)
    if not _CODE.match(code):
        raise InvitationError(
            "invalid_code", "an invitation code is letters A-Z and digits 2-7 in groups of four"
        )
    return code


def check_grid_url(text: str) -> str:
    """An ``http(s)`` URL of a grid, without a trailing slash, query or fragment."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvitationError("invalid_url", "the grid's address must start with https://")
    if parts.query or parts.fragment:
        raise InvitationError("invalid_url", "the grid's address has no ? or # part")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def format_invitation(grid_url: str, code: str) -> str:
    """The one string (a link) to hand a household."""
    return f"{check_grid_url(grid_url)}{JOIN_PATH}#{check_code(code)}"


def parse_invitation(text: str) -> Invitation:
    """Read a pasted invitation link, or a bare code."""
    if not isinstance(text, str) or not text.strip():
        raise InvitationError("empty", "paste the invitation you received")
    if len(text) > MAX_INVITATION_LENGTH:
        raise InvitationError("too_long", "this is too long to be an invitation")
    cleaned = text.strip()
    if "://" not in cleaned:
        return Invitation(None, check_code(cleaned))
    base, hash_sign, code = cleaned.partition("#")
    if not hash_sign or not code:
        raise InvitationError(
            "missing_code", "the link has no invitation code after '#'; ask your operator again"
        )
    base = base.rstrip("/")
    if not base.endswith(JOIN_PATH):
        raise InvitationError("not_an_invitation", "an invitation link ends in /join#<code>")
    return Invitation(check_grid_url(base[: -len(JOIN_PATH)]), check_code(code))


__all__ = [
    "JOIN_PATH",
    "Invitation",
    "InvitationError",
    "check_code",
    "check_grid_url",
    "format_invitation",
    "normalise_code",
    "parse_invitation",
]
