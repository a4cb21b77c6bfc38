"""The FastAPI app: OpenAI's files, fine-tuning, models and chat routes over the local trainer.

Routes are thin: parse, call the registry (through server/jobs.py and server/files.py), the
worker or the chat module, return OpenAI's shapes. Every failure becomes an OpenAI-shaped
error (server/errors.py); one gate in front of every route (server/auth.py) checks the Host
and Origin, the bearer key (on every route but /health, when one is set) and the body's size.
The web dashboard (server/dashboard/) is served at `/`.

The app keeps the TUNELAB_HOME it was created under: its registry and its uploads' bytes.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse

from tunelab import home
from tunelab.registry import open_registry
from tunelab.server import auth, chat_routes, errors
from tunelab.server.dashboard import Dashboard
from tunelab.server.files import UploadedFiles, file_object
from tunelab.server.job_requests import FileChecks, JobCreate, build_config
from tunelab.server.jobs import ServerJobs, page
from tunelab.server.models import checkpoint_objects
from tunelab.server.settings import ServeSettings
from tunelab.server.upload import receive_upload
from tunelab.server.worker import Worker


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    root = home.home()
    registry = open_registry(root / "registry.sqlite")
    files = UploadedFiles(registry, root / "server" / "files",
                          max_bytes=settings.max_upload_bytes)
    jobs = ServerJobs(registry, root)
    worker = Worker(jobs)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        if settings.run_worker:
            worker.start()
        yield
        if settings.run_worker:
            worker.shutdown()
        if not worker.is_alive():  # a job that outlived the shutdown wait keeps its handle
            registry.close()

    app = FastAPI(title="tunelab", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.settings, app.state.files, app.state.jobs = settings, files, jobs
    app.state.worker, app.state.file_checks = worker, FileChecks(files)
    app.add_middleware(PinnedHome, root=root)
    errors.install(app, root)
    dashboard = Dashboard(registry, jobs, worker, files, settings)  # the web pages at /
    auth.install(app, settings, dashboard.gate)
    _file_routes(app, files)
    _job_routes(app, settings, app.state.file_checks, jobs, worker)
    chat_routes.install(app, registry)
    dashboard.install(app)
    return app


def _file_routes(app: FastAPI, files: UploadedFiles) -> None:
    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/files")
    async def upload(request: Request) -> dict[str, Any]:
        # Read off the stream, not through UploadFile: see server/upload.py.
        return file_object(await receive_upload(request, files))

    @app.get("/v1/files")
    def list_files(purpose: str | None = None, after: str | None = None,
                   limit: int = Query(10_000, ge=1, le=10_000),
                   order: Literal["asc", "desc"] = "desc") -> dict[str, Any]:
        found = [file_object(record) for record in files.list(purpose=purpose)]
        return page(found if order == "desc" else found[::-1], after=after, limit=limit)

    @app.get("/v1/files/{file_id}")
    def retrieve_file(file_id: str) -> dict[str, Any]:
        return file_object(files.get(file_id))

    @app.get("/v1/files/{file_id}/content")
    def file_content(file_id: str) -> FileResponse:
        files.get(file_id)
        return FileResponse(files.data_path(file_id), media_type="application/octet-stream")

    @app.delete("/v1/files/{file_id}")
    def delete_file(file_id: str) -> dict[str, Any]:
        return files.delete(file_id)


def _job_routes(app: FastAPI, settings: ServeSettings, checks: FileChecks,
                jobs: ServerJobs, worker: Worker) -> None:
    @app.post("/v1/fine_tuning/jobs")
    def create_job(body: JobCreate) -> dict[str, Any]:
        config, hyper = build_config(body, checks, settings)
        job = jobs.start(config, files=(body.training_file, body.validation_file),
                         hyperparameters=hyper, labels=body.metadata)
        worker.notify()
        return jobs.job_object(job)

    @app.get("/v1/fine_tuning/jobs")
    def list_jobs(request: Request, after: str | None = None,
                  limit: int = Query(20, ge=1, le=1000)) -> dict[str, Any]:
        wanted = {key[9:-1]: value for key, value in request.query_params.items()
                  if key.startswith("metadata[") and key.endswith("]")}
        found = [job for job in jobs.list()
                 if all((job.metadata or {}).get(k) == v for k, v in wanted.items())]
        return page([jobs.job_object(job) for job in found], after=after, limit=limit)

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def retrieve_job(job_id: str) -> dict[str, Any]:
        return jobs.job_object(jobs.get(job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    def cancel_job(job_id: str) -> dict[str, Any]:
        return jobs.job_object(jobs.cancel(job_id))

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    def job_events(job_id: str, after: str | None = None,
                   limit: int = Query(20, ge=1, le=1000)) -> dict[str, Any]:
        return page(jobs.events(job_id), after=after, limit=limit)

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def job_checkpoints(job_id: str, after: str | None = None,
                        limit: int = Query(10, ge=1, le=1000)) -> dict[str, Any]:
        job = jobs.get(job_id)
        return page(checkpoint_objects(jobs.registry, job), after=after, limit=limit)


class PinnedHome:
    """Every request is served in the home the app was created under (home.pinned), so the
    door and the trainer it calls write this server's registry, whatever TUNELAB_HOME says
    later in the process."""

    def __init__(self, app: Any, root: Any) -> None:
        self.app, self.root = app, root

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        with home.pinned(self.root):
            await self.app(scope, receive, send)
