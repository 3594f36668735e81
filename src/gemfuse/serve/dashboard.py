"""The dashboard's JSON endpoints: runs, evals and the loop, read from the configured folders (never written),
under the same API key as the rest of the server. Handlers are plain functions: FastAPI runs them in its thread
pool, so reading a large folder does not hold up chat requests."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..dashboard import (
    CaptureCounts,
    Folders,
    OutsideFolders,
    eval_detail,
    eval_summaries,
    loop_view,
    run_detail,
    run_summaries,
)
from .schemas import error_body

PREFIX = "/v1/gemfuse"


def _detail(what: str, ident: str, read: Callable[[], dict | None]):
    """What `read` found under `ident`; 403 for a path outside the folders, 404 when nothing is there."""
    try:
        found = read()
    except OutsideFolders as exc:
        return JSONResponse(error_body(str(exc), "invalid_request_error", None, "outside_folders"), status_code=403)
    if found is None:
        return JSONResponse(error_body(f"no {what} at {ident!r}", "invalid_request_error", None, "not_found"),
                            status_code=404)
    return found


def dashboard_router(folders: Folders, models: dict[str, dict]) -> APIRouter:
    router = APIRouter(prefix=PREFIX)
    counts = CaptureCounts()

    @router.get("/dashboard")
    def folders_view() -> dict:
        return {"folders": folders.describe()}

    @router.get("/runs")
    def runs() -> dict:
        return {"object": "list", "data": run_summaries(folders)}

    @router.get("/runs/{ident:path}")
    def run(ident: str, since: int = 0):
        return _detail("run folder", ident, lambda: run_detail(folders, ident, since))

    @router.get("/evals")
    def evals() -> dict:
        return {"object": "list", "data": eval_summaries(folders)}

    @router.get("/evals/{ident:path}")
    def evaluation(ident: str):
        return _detail("eval report", ident, lambda: eval_detail(folders, ident, models))

    @router.get("/loop")
    def loop() -> dict:
        return loop_view(folders, counts)

    return router
