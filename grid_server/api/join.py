"""``GET /join``: the page an invitation link opens in a browser.

An invitation is ``<public_url>/join#CODE`` (:mod:`p2p_energy_client.invitation`);
a household pastes it into Home Assistant, but one who opens it in a browser
lands here and learns what to do: install the integration, add it, paste the
link (shown, with a copy button), then add sources and meters. The code is in
the fragment, which browsers never send: the page reads it with a few lines
of inline script, so the server, its logs and any proxy never see it.

One self-contained HTML document (``static/join``: the template, its style and
script inlined, the texts per language), no outside resources; a strict
Content-Security-Policy allows exactly that style and script by hash. The
language follows ``?lang=`` or the browser's ``Accept-Language`` (English by
default; German too).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import string
from pathlib import Path
from typing import Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from .deps import grid_of

STATIC: Final = Path(__file__).parent / "static" / "join"
DEFAULT_LANGUAGE: Final = "en"
GUIDE_URL: Final = (
    "https://github.com/p2p-energy/p2p_energy/blob/main/docs/households/home-assistant.md"
)

router = APIRouter(include_in_schema=False)


@functools.cache
def texts() -> dict[str, dict[str, str]]:
    """The page's texts by language (``static/join/texts.json``)."""
    loaded: dict[str, dict[str, str]] = json.loads((STATIC / "texts.json").read_text("utf-8"))
    return loaded


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


@functools.cache
def _parts() -> tuple[string.Template, str, str, str]:
    """The template, the inline style and script, and the policy that allows just those."""
    style = (STATIC / "join.css").read_text("utf-8")
    script = (STATIC / "join.js").read_text("utf-8")
    policy = (
        f"default-src 'none'; style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return string.Template((STATIC / "join.html").read_text("utf-8")), style, script, policy


def choose_language(query: str | None, accept: str | None) -> str:
    """``?lang=`` when it names a language of the page, else the browser's best, else English."""
    available = texts()
    if query in available:
        return query
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate((accept or "").split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in available and quality > 0:
            ranked.append((-quality, index, primary))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE


@functools.cache
def render(language: str, grid_name: str) -> str:
    """The page in ``language`` for the grid called ``grid_name`` (each text HTML-escaped)."""
    template, style, script, _ = _parts()
    words = texts()[language]
    values = {key: html.escape(text.format(grid=grid_name)) for key, text in words.items()}
    others = [
        f'<li><a href="?lang={code}" hreflang="{code}" lang="{code}">'
        f"{html.escape(t['language'])}</a></li>"
        for code, t in texts().items()
        if code != language
    ]
    return template.substitute(
        values,
        lang=language,
        languages="".join(others),
        guide_url=html.escape(GUIDE_URL),
        style=style,
        script=script,
    )


@router.get("/join")
async def join_page(request: Request) -> Response:
    """How to join this grid with the invitation link the browser opened."""
    language = choose_language(
        request.query_params.get("lang"), request.headers.get("accept-language")
    )
    body = render(language, grid_of(request).config.name)
    return Response(
        body,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": _parts()[3],
            "Content-Language": language,
            "Vary": "Accept-Language",
            "Cache-Control": "no-cache",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


__all__ = ["choose_language", "render", "router"]
