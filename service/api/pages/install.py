"""Mount the pages, their static files and the offline API docs on the app."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Swagger UI and ReDoc bundles, pinned through the fastapi-offline wheel (no CDN at run time).
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
STATIC_URL = "/static"
DOCS_ASSETS_URL = "/static/docs"

# The docs pages reach nothing but the app: no CDN, no validator badge, no vendor logo.
# Their one inline script runs by its hash; the bundles set inline styles.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def with_docs_csp(page: HTMLResponse) -> HTMLResponse:
    """The docs policy, allowing exactly the page's inline scripts by their sha256."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(bytes(page.body).decode())
    )
    page.headers["Content-Security-Policy"] = DOCS_CSP.format(hashes=hashes)
    return page


router = APIRouter(include_in_schema=False)


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html", headers=_NO_CACHE)


_NO_CACHE = {"Cache-Control": "no-cache"}


@router.get("/")
@router.get("/ui/")
def jobs_page() -> FileResponse:
    return _page("jobs.html")


@router.get("/ui/jobs/{job_id}")
def job_page(job_id: str) -> FileResponse:
    return _page("job.html")


@router.get("/ui/plan")
def plan_page() -> FileResponse:
    return _page("plan.html")


def install_pages(app: FastAPI) -> None:
    """The app must be created with ``docs_url=None, redoc_url=None``; this serves both."""
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - API docs",
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon.svg",
            swagger_ui_parameters={"validatorUrl": None},
        )
        return with_docs_csp(page)

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - API reference",
            redoc_js_url=f"{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC_URL}/favicon.svg",
            with_google_fonts=False,
        )
        return with_docs_csp(page)

    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
