"""What the server can answer with: its models and checkpoints, as OpenAI objects.

These lists are also the only names a client may send as a chat `model`; see chat_routes.
"""

from __future__ import annotations

from typing import Any

from tunelab.registry import JobRecord, Registry
from tunelab.registry.metrics import TRAIN_LOSS, VALID_LOSS


def checkpoint_objects(registry: Registry, job: JobRecord) -> list[dict[str, Any]]:
    """The job's checkpoints as OpenAI checkpoint objects, newest first."""
    model = job.fine_tuned_model or f"ft:{job.base_model}:{job.suffix or ''}:{job.id}"
    objects = []
    for checkpoint in registry.list_checkpoints(job.id):
        metrics = checkpoint.metrics or {}
        if "points_to" in metrics:  # `latest` and `best` point at a real checkpoint
            continue
        objects.append({
            "object": "fine_tuning.job.checkpoint",
            "id": f"ftckpt-{job.id[6:]}-{checkpoint.name}",
            "created_at": int(checkpoint.created_at), "fine_tuning_job_id": job.id,
            "fine_tuned_model_checkpoint": f"{model}:ckpt-{checkpoint.name}",
            "step_number": checkpoint.step or 0,
            "metrics": {"step": checkpoint.step, TRAIN_LOSS: metrics.get(TRAIN_LOSS),
                        VALID_LOSS: metrics.get(VALID_LOSS)},
        })
    return objects[::-1]


def local_models(registry: Registry) -> list[dict[str, Any]]:
    """The embedded base model and every succeeded local fine-tune, as OpenAI model objects."""
    from tunelab.local.model_source import DEFAULT_MODEL

    models = [{"id": DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "tunelab"}]
    # Any job with a run folder trained here, whoever started it (the CLI or this server).
    tuned = [job for job in registry.list_jobs(limit=1000)
             if job.status == "succeeded" and job.fine_tuned_model and job.run_dir]
    models += [{"id": job.fine_tuned_model, "object": "model", "created": int(job.created_at),
                "owned_by": "tunelab"} for job in tuned]
    return models
