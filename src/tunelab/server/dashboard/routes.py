"""The dashboard's routes: pages (server-rendered with Jinja, autoescaped), their data
(JSON and server-sent events) and the POST forms behind the buttons.

Every POST checks the session's CSRF token (security.check_post) before it reads or changes
anything, its Origin checked already in front of every route (server/auth.py); every page
carries the headers in security.HEADERS. No page or stream shows the server's home as it is:
every value a template prints, and every stream message, goes through errors.home_relative.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, Undefined, select_autoescape
from starlette.concurrency import run_in_threadpool

from tunelab.errors import NotFoundError, TunelabError
from tunelab.registry import JobRecord, Registry
from tunelab.server.dashboard import comparisons, security, stream, views
from tunelab.server.dashboard.actions import EXPORT_FORMATS, OVERRIDES, Actions, read_overrides
from tunelab.server.dashboard.launches import Launches, NewRun
from tunelab.server.errors import home_relative
from tunelab.server.files import UploadedFiles
from tunelab.server.jobs import ServerJobs
from tunelab.server.models import base_models, check_base_model
from tunelab.server.settings import ServeSettings
from tunelab.server.upload import receive_upload
from tunelab.server.worker import Worker

HERE = Path(__file__).parent
NOTES = {"cancel": "Cancel requested.", "resume": "Resume queued: it continues from the "
         "chosen checkpoint.", "export": "Export started: the events say when it is written.",
         "start": "Run queued: the server's worker trains it next."}


class Dashboard:
    """The dashboard over one server's registry, jobs, worker and uploads."""

    def __init__(self, registry: Registry, jobs: ServerJobs, worker: Worker,
                 files: UploadedFiles, settings: ServeSettings) -> None:
        self.registry, self.files, self.settings = registry, files, settings
        self.root = jobs.home
        self.sessions = security.Sessions(settings)
        self.gate = security.BrowserGate(self.sessions)
        self.throttle = security.LoginThrottle()
        self.actions = Actions(jobs, worker, settings)
        self.launches = Launches(on_job=self.actions.started)
        self.checks = views.DataChecks()
        self.comparisons = comparisons.Comparisons(registry)
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(default=True),
                                     finalize=self.public)
        self.templates.filters["num"] = _num

    # rendering ----------------------------------------------------------------------
    def public(self, value: Any) -> Any:
        """A value as a page or a stream shows it: the home written TUNELAB_HOME."""
        return home_relative(value, self.root) if type(value) is str else value

    async def public_stream(self, messages: AsyncIterator[str]) -> AsyncIterator[str]:
        async for text in messages:
            yield self.public(text)

    def page(self, request: Request, template: str, status: int = 200,
             **context: Any) -> HTMLResponse:
        """The template with the session's CSRF token; a browser without a session gets an
        anonymous one when no key is set (with a key, only the login form gives one)."""
        nonce, cookie = self.sessions.session(request), None
        if nonce is None and not self.sessions.keyed:
            cookie = self.sessions.issue()
            nonce = cookie.split(".")[0]
        html = self.templates.get_template(template).render(
            csrf=self.sessions.csrf(nonce) if nonce else "", keyed=self.sessions.keyed,
            assets=nonce is not None or security.bearer_given(request, self.settings),
            path=request.url.path, **context)
        response = HTMLResponse(html, status)
        if cookie:
            self.sessions.set_cookie(response, cookie)
        return response

    def problem(self, request: Request, error: TunelabError) -> HTMLResponse:
        status = 404 if isinstance(error, NotFoundError) else 400
        return self.page(request, "error.html", status, message=error.render())

    def job(self, job_id: str) -> JobRecord:
        return self.registry.get_job(job_id)

    async def guarded(self, request: Request) -> tuple[dict[str, str], Response | None]:
        """The posted form, and the 403 to answer instead when the request is not ours."""
        form = {key: str(value) for key, value in (await request.form()).items()
                if isinstance(value, str)}
        return form, security.check_post(request, self.sessions, form.get("csrf"))

    # wiring -------------------------------------------------------------------------
    def install(self, app: FastAPI) -> None:
        @app.middleware("http")
        async def headers(request: Request, call_next):  # type: ignore[no-untyped-def]
            if not security.is_dashboard_path(request.url.path):
                return await call_next(request)
            response = await call_next(request)
            for name, value in security.HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
        _login_routes(app, self)
        _job_routes(app, self)
        _run_routes(app, self)
        _compare_routes(app, self)


def _num(value: Any, pattern: str = "{:.4f}") -> str:
    """A number for a table; "-" where there is none (missing, or not a number)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return pattern.format(value)
    return "-" if value is None or isinstance(value, Undefined) else str(value)


def _login_routes(app: FastAPI, board: Dashboard) -> None:
    @app.get(security.LOGIN)
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return board.page(request, "login.html", next=security.safe_next(next), failed=False)

    @app.post(security.LOGIN)
    async def login(request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        target = security.safe_next(form.get("next"))
        address = request.client.host if request.client else ""
        wait = board.throttle.wait(address)
        if wait:  # the key is not even looked at: a guesser learns nothing while waiting
            answer = board.page(request, "login.html", 429, next=target, failed=False,
                                wait=wait)
            answer.headers["Retry-After"] = str(wait)
            return answer
        if not board.sessions.key_ok(form.get("key", "")):
            board.throttle.failed(address)
            return board.page(request, "login.html", 401, next=target, failed=True)
        board.throttle.succeeded(address)
        response = RedirectResponse(target, 303)
        board.sessions.set_cookie(response, board.sessions.issue())
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        _, refused = await board.guarded(request)
        if refused:
            return refused
        nonce = board.sessions.session(request)
        if nonce is not None:
            board.sessions.revoke(nonce)
        response = RedirectResponse(security.LOGIN if board.sessions.keyed else "/", 303)
        response.delete_cookie(security.COOKIE, path="/")
        return response


def _job_routes(app: FastAPI, board: Dashboard) -> None:
    @app.get("/")
    def jobs_page(request: Request, provider: str = "", status: str = "",
                  source: str = "") -> HTMLResponse:
        rows, providers = views.job_rows(board.registry, provider=provider, status=status,
                                         origin=source)
        return board.page(request, "jobs.html", rows=rows, providers=providers,
                          chosen={"provider": provider, "status": status, "source": source},
                          **views.filters())

    @app.get("/jobs.json")
    def jobs_data(provider: str = "", status: str = "", source: str = "") -> dict[str, Any]:
        rows, _ = views.job_rows(board.registry, provider=provider, status=status,
                                 origin=source)
        return {"jobs": rows}

    @app.get("/jobs/{job_id}")
    def job_page(request: Request, job_id: str, done: str = "") -> HTMLResponse:
        try:
            data = views.job_page(board.registry, board.job(job_id), board.checks)
        except TunelabError as error:
            return board.problem(request, error)
        return board.page(request, "job.html", note=NOTES.get(done), formats=EXPORT_FORMATS,
                          **data)

    @app.get("/jobs/{job_id}/metrics.json")
    def job_metrics(job_id: str) -> dict[str, Any]:
        job = board.job(job_id)
        points = views.curve_points(board.registry.list_metrics(job_id))
        events = [views.event_dict(e) for e in board.registry.list_events(job_id)]
        return {"points": points,
                "progress": views.progress(points, views.total_steps(events, job), job.status)}

    @app.get("/jobs/{job_id}/stream")
    def job_stream(request: Request, job_id: str, after: str = "") -> StreamingResponse:
        board.job(job_id)  # a 404 now, not an empty stream
        cursor = stream.Cursor.parse(request.headers.get("last-event-id") or after)
        return StreamingResponse(board.public_stream(stream.job_stream(
            request, board.registry, job_id, cursor)), media_type="text/event-stream")

    @app.get("/stream/jobs")
    def jobs_stream(request: Request, provider: str = "", status: str = "",
                    source: str = "") -> StreamingResponse:
        filters = {"provider": provider, "status": status, "origin": source}
        return StreamingResponse(board.public_stream(stream.jobs_stream(
            request, board.registry, filters)), media_type="text/event-stream")

    @app.post("/jobs/{job_id}/{action}")
    async def job_action(request: Request, job_id: str, action: str) -> Response:
        form, refused = await board.guarded(request)
        if refused:
            return refused
        try:
            job = board.job(job_id)
            if action == "cancel":
                await run_in_threadpool(board.actions.cancel, job)
            elif action == "resume":
                board.actions.resume(job, form.get("checkpoint") or None)
            elif action == "export":
                board.actions.export(job, form.get("format", "hf"))
            else:
                return board.page(request, "error.html", 404, message=f"no action {action!r}")
        except TunelabError as error:
            return board.problem(request, error)
        return RedirectResponse(f"/jobs/{job_id}?done={action}", 303)


def _run_routes(app: FastAPI, board: Dashboard) -> None:
    from tunelab.config import PRESETS

    def new_page(request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        from tunelab.providers import provider_names

        uploads = board.files.list(purpose="fine-tune")
        chosen = context.pop("form", {}) or dict(request.query_params)
        report, examples = None, []
        file_id = chosen.get("file")
        if file_id:
            try:
                path = board.files.data_path(board.files.get(file_id).id)
            except Exception:  # an id that is not an upload: no report, the form says so
                report = {"error": f"no uploaded file {file_id}"}
            else:
                # a local run's counts with the chosen base model's tokenizer (views.py)
                report = board.checks.report(path, chosen.get("provider") or "openai",
                                             chosen.get("model") or None)
                examples = views.preview(path)
        launch = board.launches.get(chosen.get("launch") or "")
        return board.page(request, "new.html", status, uploads=uploads, presets=PRESETS,
                          launch=launch, base_models=base_models(),
                          providers=provider_names(), form=chosen, report=report,
                          examples=examples,
                          overrides=list(OVERRIDES), **context)

    @app.get("/new")
    def new_run(request: Request) -> HTMLResponse:
        return new_page(request)

    @app.post("/new/upload")
    async def upload(request: Request) -> Response:
        refused = security.check_post(request, board.sessions,
                                      request.headers.get("x-csrf-token"))
        if refused:  # before a byte of the body is read
            return refused
        record = await receive_upload(request, board.files)
        return JSONResponse({"id": record.id, "filename": record.filename})

    @app.post("/new/{step}")
    async def new_step(request: Request, step: str) -> Response:
        form, refused = await board.guarded(request)
        if refused:
            return refused
        if step not in ("dry-run", "start"):
            return new_page(request, 404, form=form, failure=f"no step {step!r}")
        try:
            run = _new_run(board, form)
            if step == "dry-run":
                started, warning = await run_in_threadpool(board.launches.estimate, run)
                return new_page(request, form=form, estimate=started.plan, warning=warning,
                                cloud_estimate=started.estimates[0] if started.estimates
                                else None)
            token, launch = await run_in_threadpool(board.launches.start, run)
        except TunelabError as error:
            return new_page(request, 400, form=form, failure=error.render())
        except Exception as error:  # an ApiError of the uploads (unknown id)
            return new_page(request, 400, form=form, failure=str(error))
        if launch.job_id:  # made already (a local run, queued): its page
            return RedirectResponse(f"/jobs/{launch.job_id}?done=start", 303)
        query = urlencode({"file": form["file"], "provider": run.provider, "launch": token})
        return RedirectResponse(f"/new?{query}", 303)


def _new_run(board: Dashboard, form: dict[str, str]) -> NewRun:
    """The new-run form as the door's request needs it: the uploads' paths and ids. A local
    run's model is a base model GET /v1/models lists, as for the API: never a path."""
    train = board.files.get(form.get("file", ""))
    valid = board.files.get(form["validation"]) if form.get("validation") else None
    provider = form.get("provider") or "local"
    if provider == "local" and form.get("model"):
        check_base_model(form["model"])
    return NewRun(provider=provider,
                  train=board.files.data_path(train.id), train_id=train.id,
                  validation=board.files.data_path(valid.id) if valid else None,
                  validation_id=valid.id if valid else None,
                  model=form.get("model") or None, suffix=form.get("suffix") or None,
                  preset=form.get("preset") or None, overrides=read_overrides(form),
                  caps={"max_steps": board.settings.max_steps,
                        "max_length": board.settings.max_length})


def _compare_routes(app: FastAPI, board: Dashboard) -> None:
    from tunelab.evaluate.report import JUDGE_COLUMNS, METRIC_COLUMNS

    @app.get("/compare")
    def compare_page(request: Request) -> HTMLResponse:
        running = [run.to_dict() for run in board.comparisons.runs.values()
                   if run.status != "done"]
        return board.page(request, "compare.html", choices=comparisons.choices(board.registry),
                          judges=comparisons.judges(board.registry),
                          saved=comparisons.saved_list(), running=running)

    @app.post("/compare")
    async def compare_start(request: Request) -> Response:
        form, refused = await board.guarded(request)
        if refused:
            return refused
        models = (await request.form()).getlist("model")
        try:
            run = board.comparisons.start([str(m) for m in models],
                                          limit=_bounded(form.get("limit"), 5, 1, 200),
                                          max_new_tokens=_bounded(form.get("max_new_tokens"),
                                                                  64, 1, 2048),
                                          judge=form.get("judge") or None)
        except TunelabError as error:
            return board.problem(request, error)
        return RedirectResponse(f"/compare/{run.id}", 303)

    @app.get("/compare/{run_id}/status.json")
    def compare_status(run_id: str) -> dict[str, Any]:
        run = board.comparisons.get(run_id)
        if run is not None:
            return {**run.to_dict(), "error": board.public(run.error)}
        if comparisons.saved(run_id) is not None:
            return {"id": run_id, "status": "done"}
        raise NotFoundError(f"no comparison {run_id!r}")

    @app.get("/compare/{run_id}")
    def compare_result(request: Request, run_id: str) -> HTMLResponse:
        data = comparisons.saved(run_id)
        run = board.comparisons.get(run_id)
        if data is None and run is None:
            return board.page(request, "error.html", 404, message=f"no comparison {run_id!r}")
        return board.page(request, "comparison.html", run=run.to_dict() if run else None,
                          data=data, rows=comparisons.side_by_side(data) if data else [],
                          metric_columns=METRIC_COLUMNS, judge_columns=JUDGE_COLUMNS)


def _bounded(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(raw or default), low), high)
    except ValueError:
        return default
