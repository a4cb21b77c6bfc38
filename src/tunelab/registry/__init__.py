"""The job history: one SQLite file (WAL) shared by every provider, the CLI and the server."""

from tunelab.registry.store import Checkpoint, Event, JobRecord, Registry, open_registry

__all__ = ["Checkpoint", "Event", "JobRecord", "Registry", "open_registry"]
