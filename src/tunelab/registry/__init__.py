"""The job history: one SQLite file (WAL) shared by every provider, the CLI and the server."""

from tunelab.registry.server_documents import SERVER
from tunelab.registry.store import Checkpoint, Event, FileRecord, JobRecord, Registry, open_registry

__all__ = ["SERVER", "Checkpoint", "Event", "FileRecord", "JobRecord", "Registry",
           "open_registry"]
