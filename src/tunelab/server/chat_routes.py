"""The /v1/models and /v1/chat/completions routes: OpenAI's shapes over local generation.

The request model is the whole validation of a chat request: anything it lets through can be
rendered by a chat template and generated from, so a malformed request is a 400, never a 500.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from tunelab.registry import Registry
from tunelab.server.chat import Busy, ChatService, completion_object, stream_chunks
from tunelab.server.errors import error_response
from tunelab.server.models import check_aliases

MAX_TOKENS = 4096
SEED_RANGE = 2**63  # OpenAI's seed is a 64-bit integer; torch takes any of them


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: StrictStr


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, tool_call_id...: nothing we use

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: StrictStr | list[TextPart]

    def plain(self) -> dict[str, str]:
        """The message as a chat template takes it. `developer` is OpenAI's new name for
        `system`, which is the one local templates know."""
        text = self.content if isinstance(self.content, str) \
            else "".join(part.text for part in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # clients send many options we can ignore

    model: StrictStr
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(None, ge=-SEED_RANGE, lt=SEED_RANGE)
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None


def install(app: FastAPI, registry: Registry) -> None:
    settings = app.state.settings
    check_aliases(registry, settings.aliases)  # a bad --alias stops the server from starting
    chat_service = ChatService(registry, settings)
    app.state.chat = chat_service

    @app.exception_handler(Busy)
    async def _busy(_: Request, busy: Busy) -> JSONResponse:
        response = error_response(503, busy.message, code="server_overloaded")
        response.headers["Retry-After"] = str(busy.retry_after)
        return response

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        return {"object": "list", "data": chat_service.models()}

    @app.get("/v1/models/{model_id:path}")
    def retrieve_model(model_id: str) -> dict[str, Any]:
        return chat_service.find(model_id).object()

    @app.post("/v1/chat/completions", response_model=None)
    def chat(body: ChatRequest) -> dict[str, Any] | StreamingResponse:
        served = chat_service.find(body.model)
        completion = chat_service.complete(
            served, [message.plain() for message in body.messages],
            max_tokens=body.max_completion_tokens or body.max_tokens,
            temperature=body.temperature, top_p=body.top_p, seed=body.seed or 0)
        if not body.stream:
            return completion_object(body.model, completion)
        usage = bool((body.stream_options or {}).get("include_usage"))
        return StreamingResponse(stream_chunks(body.model, completion, include_usage=usage),
                                 media_type="text/event-stream")
