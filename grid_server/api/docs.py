"""The API's pages for people (``/docs``), served with files of our own.

FastAPI's default pages load Swagger UI and ReDoc from a CDN: a grid's
operator page would run scripts from a third party, and nothing is fetched
from outside this product at run time. With ``api_docs`` on, ``/docs`` is
Swagger UI from the ``swagger-ui-bundle`` package, its files under
``/docs/static``; there is no ReDoc page. The OpenAPI document itself is
always at ``/openapi.json``.
"""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH: Final = "/docs"
STATIC_PATH: Final = DOCS_PATH + "/static"


def install(app: FastAPI) -> None:
    """``/docs`` and its files, from this server only."""
    app.mount(STATIC_PATH, StaticFiles(directory=str(swagger_ui_path)), name="docs-static")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API",
            swagger_js_url=f"{STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PATH}/favicon-32x32.png",
        )


__all__ = ["install"]
