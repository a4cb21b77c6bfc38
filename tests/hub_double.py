"""A local stand-in for the Hugging Face hub, for huggingface_hub to talk to over real HTTP.

Point HF_ENDPOINT at `HubDouble.url`. It serves model folders under repo ids with the routes
huggingface_hub 2.x calls for `snapshot_download`, `hf_hub_download` and `HfApi`:

    GET  /api/models/ORG/NAME[/revision/REV]    repo info: sha, siblings, gated
    GET  /api/models/ORG/NAME/tree/REV[/PATH]   the file listing (type, path, size, oid, lfs)
    POST /api/models/ORG/NAME/paths-info/REV    the same entries for the paths asked
    HEAD /ORG/NAME/resolve/REV/FILE             ETag, X-Repo-Commit, Content-Length
    GET  /ORG/NAME/resolve/REV/FILE             the bytes; `Range: bytes=N-` answers 206

A gated repo answers its files with 401 (no token) or 403 (another token) and
`X-Error-Code: GatedRepo`, as the hub does, and serves them to `Authorization: Bearer TOKEN`.
`break_once(repo, file)` makes the next GET of that file send its headers and half its
bytes, then drop the connection: the client must resume with a Range request. Every request
is kept in `requests` (method, path, Range header), so tests can say what was asked.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    folder: Path
    gated_token: str | None = None  # gated: only this Bearer token gets the files

    @property
    def files(self) -> dict[str, Path]:
        return {str(path.relative_to(self.folder)): path
                for path in sorted(self.folder.rglob("*")) if path.is_file()}

    @property
    def sha(self) -> str:
        digest = hashlib.sha1()
        for name, path in self.files.items():
            digest.update(name.encode() + hashlib.sha1(path.read_bytes()).digest())
        return digest.hexdigest()


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    authorized: bool


@dataclass
class HubDouble:
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    broken: set[tuple[str, str]] = field(default_factory=set)
    token: str = "hf_test_token_do_not_print"  # the gated repos' Bearer token

    def add(self, repo_id: str, folder: Path, *, gated_token: str | None = None) -> None:
        self.repos[repo_id] = Repo(folder, gated_token)

    def break_once(self, repo_id: str, filename: str) -> None:
        self.broken.add((repo_id, filename))

    def start(self) -> HubDouble:
        double = self

        class Handler(_Handler):
            hub = double

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def downloads(self, filename: str | None = None) -> list[Request]:
        """The GETs of files (resolve URLs), or of one file."""
        return [r for r in self.requests if r.method == "GET" and "/resolve/" in r.path
                and (filename is None or r.path.endswith("/" + filename))]


def _lfs(path: Path) -> bool:
    return path.suffix in (".safetensors", ".gguf", ".bin")


def _entry(name: str, path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    entry: dict[str, Any] = {"type": "file", "path": name, "size": len(data),
                             "oid": hashlib.sha1(data).hexdigest()}
    if _lfs(path):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                        "pointerSize": 134}
    return entry


class _Handler(BaseHTTPRequestHandler):
    hub: HubDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: Any) -> None:
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self._route(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._route(body=True)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self._route(body=True, posted=raw)

    # -- routing --------------------------------------------------------------------------
    def _route(self, *, body: bool, posted: bytes | None = None) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append(Request(self.command, path, self.headers.get("Range"),
                                         self._token() is not None))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = self._repo("/".join(parts[2:4]))
            if repo is None:
                return
            rest = parts[4:]
            if not rest or rest[0] == "revision":
                return self._json(self._info("/".join(parts[2:4]), repo))
            if rest[0] == "tree":
                under = "/".join(rest[2:])
                return self._json([_entry(name, file) for name, file in repo.files.items()
                                   if name.startswith(under)])
            if rest[0] == "paths-info" and posted is not None:
                wanted = set(_posted_paths(posted, self.headers.get("Content-Type", "")))
                return self._json([_entry(name, file) for name, file in repo.files.items()
                                   if name in wanted])
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id, filename = "/".join(parts[:2]), "/".join(parts[4:])
            repo = self._repo(repo_id)
            if repo is None:
                return
            if repo.gated_token is not None and self._token() != repo.gated_token:
                status = 401 if self._token() is None else 403
                return self._error(status, "GatedRepo",
                                   f"Access to model {repo_id} is restricted.")
            file = repo.files.get(filename)
            if file is None:
                return self._error(404, "EntryNotFound", "Entry not found")
            return self._file(repo_id, repo, filename, file, body=body)
        self._error(404, "RepoNotFound", "Repository not found")

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")
        return repo

    def _token(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        return header.removeprefix("Bearer ").strip() or None if header else None

    def _info(self, repo_id: str, repo: Repo) -> dict[str, Any]:
        return {"id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": False,
                "gated": "manual" if repo.gated_token else False, "disabled": False,
                "siblings": [{"rfilename": name} for name in repo.files], "tags": []}

    # -- answers --------------------------------------------------------------------------
    def _file(self, repo_id: str, repo: Repo, filename: str, file: Path, *,
              body: bool) -> None:
        data = file.read_bytes()
        etag = hashlib.sha256(data).hexdigest() if _lfs(file) else hashlib.sha1(data).hexdigest()
        start = _range_start(self.headers.get("Range"))
        chunk = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", repo.sha)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(chunk)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not body:
            return
        if (repo_id, filename) in self.hub.broken:
            self.hub.broken.discard((repo_id, filename))
            # huggingface_hub writes what it got in 10 MB chunks: keep one whole, so the
            # next try has a part to resume from
            self.wfile.write(chunk[:max(len(chunk) - 2**20, len(chunk) // 2)])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # the connection drops mid-file
            return
        self.wfile.write(chunk)

    def _json(self, value: Any) -> None:
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _range_start(header: str | None) -> int:
    if not header or not header.startswith("bytes="):
        return 0
    return int(header[len("bytes="):].split("-", 1)[0] or 0)


def _posted_paths(raw: bytes, content_type: str) -> list[str]:
    from urllib.parse import parse_qs

    if "json" in content_type:
        return list(json.loads(raw or b"{}").get("paths") or [])
    return parse_qs(raw.decode()).get("paths", [])


# fixtures (test modules load them with `pytest_plugins = ["hub_double"]`) ------------------
def build_tiny_model(folder: Path, tokenizer_from: Path) -> Path:
    """A real Llama-architecture model small enough to serve and train in seconds (hidden
    64, 2 layers: 12.6 MB, just over huggingface_hub's 10 MB download chunk), with the
    embedded SmolLM2's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def without_chat_template(source: Path, folder: Path) -> Path:
    import shutil

    shutil.copytree(source, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.pop("chat_template", None)
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return folder


try:
    import pytest
except ImportError:  # imported outside pytest (a bench script): no fixtures
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def tiny_models(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> dict:
        from tunelab.local import model_source

        with pytest.MonkeyPatch.context() as patch:  # runs before the per-test environment
            patch.setenv("TUNELAB_CACHE_DIR", str(shared_cache))
            patch.setenv("HF_HUB_OFFLINE", "1")
            embedded = model_source.resolve_model_dir(None)
        root = tmp_path_factory.mktemp("hub-models")
        tiny = build_tiny_model(root / "tiny", embedded)
        return {"tiny": tiny, "plain": without_chat_template(tiny, root / "plain")}

    @pytest.fixture
    def hub(tiny_models: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        """The stand-in hub with tiny/llama, tiny/gated (its `token`) and tiny/plain (no chat
        template); HF_ENDPOINT points at it, downloads are on, the HF cache is empty."""
        from huggingface_hub import constants

        double = HubDouble()
        double.add("tiny/llama", tiny_models["tiny"])
        double.add("tiny/gated", tiny_models["tiny"], gated_token=double.token)
        double.add("tiny/plain", tiny_models["plain"])
        double.start()
        monkeypatch.setenv("HF_ENDPOINT", double.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        # huggingface_hub read HF_HUB_OFFLINE=1 (conftest) when it was imported
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield double
        double.stop()
