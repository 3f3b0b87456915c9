"""Invitations as the operator hands them out: the link of a code on this grid, and its QR code.

The link is :func:`p2p_energy_client.invitation.format_invitation` of the grid's
public URL (``[grid] public_url``) and the code, ``https://grid.example.org/join#CODE``:
one thing for the household to paste into Home Assistant (or scan), with the
code in the fragment, which browsers never send, so no access log sees it.
Without a public URL there is no link, only the code. The CLI prints the QR
code as text (:func:`qr_text`), the dashboard shows it as SVG (:func:`qr_svg`),
both drawn by segno.
"""

from __future__ import annotations

import io
from typing import Final

import segno

from grid_server.config import GridConfig
from p2p_energy_client.invitation import format_invitation

# Medium error correction (15 %): a code on a screen or a smudged print still reads.
QR_ERROR: Final = "m"
# The quiet zone around the code, in modules: the standard asks for 4; two suffice on a
# terminal, whose background is already plain.
QR_BORDER_SVG: Final = 4
QR_BORDER_TEXT: Final = 2


def invitation_link(config: GridConfig, code: str) -> str | None:
    """The link to hand a household, or None while the grid has no public URL."""
    if config.public_url is None:
        return None
    return format_invitation(config.public_url, code)


def qr_text(link: str) -> str:
    """The QR code as half-block characters for a terminal: two rows of modules per line,
    light modules drawn, so it reads on the usual light-on-dark terminal."""
    out = io.StringIO()
    segno.make(link, error=QR_ERROR).terminal(out=out, compact=True, border=QR_BORDER_TEXT)
    return out.getvalue()


def qr_svg(link: str, title: str) -> str:
    """The QR code as a standalone SVG document (black on white, whatever the page's theme;
    ``title`` is its accessible name)."""
    out = io.BytesIO()
    segno.make(link, error=QR_ERROR).save(
        out,
        kind="svg",
        xmldecl=False,
        svgns=True,
        nl=False,
        scale=4,
        border=QR_BORDER_SVG,
        dark="#000",
        light="#fff",
        title=title,
        svgclass=None,
        lineclass=None,
    )
    return out.getvalue().decode()


__all__ = ["invitation_link", "qr_svg", "qr_text"]
