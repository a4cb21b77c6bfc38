"""The job history: one SQLite file (WAL) shared by every provider, the CLI and the server."""

from tunelab.registry.server_documents import SERVER
from tunelab.registry.store import (
    QUEUED_FOR_WORKER,
    Checkpoint,
    Event,
    FileRecord,
    JobRecord,
    Registry,
    new_job_id,
    open_registry,
)

__all__ = ["QUEUED_FOR_WORKER", "SERVER", "Checkpoint", "Event", "FileRecord", "JobRecord",
           "Registry", "new_job_id", "open_registry"]
