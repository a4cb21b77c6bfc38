"""The /v1/models and /v1/chat/completions routes: OpenAI's shapes over local generation."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tunelab.registry import Registry
from tunelab.server.chat import complete, completion_object, stream_chunks
from tunelab.server.errors import not_found
from tunelab.server.models import local_models


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # clients send many options we can ignore

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None



def install(app: FastAPI, registry: Registry) -> None:
    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        return {"object": "list", "data": local_models(registry)}

    @app.get("/v1/models/{model_id:path}")
    def retrieve_model(model_id: str) -> dict[str, Any]:
        for model in local_models(registry):
            if model["id"] == model_id:
                return model
        raise not_found("model", model_id, param="model")

    @app.post("/v1/chat/completions", response_model=None)
    def chat(body: ChatRequest) -> dict[str, Any] | StreamingResponse:
        limit = body.max_completion_tokens or body.max_tokens or 256
        completion = complete(body.model, body.messages, max_tokens=limit,
                              temperature=body.temperature, top_p=body.top_p,
                              seed=body.seed or 0)
        if not body.stream:
            return completion_object(body.model, completion)
        usage = bool((body.stream_options or {}).get("include_usage"))
        return StreamingResponse(stream_chunks(body.model, completion, include_usage=usage),
                                 media_type="text/event-stream")
