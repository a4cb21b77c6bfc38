"""The server's memory and time under a large chunked upload and a large job file.

Starts `tunelab serve`'s app (worker off) in a subprocess with its own TUNELAB_HOME and
TMPDIR, then, watching the subprocess's resident memory (RSS, sampled every 10 ms):
1. sends a chunked (no Content-Length) multipart upload of --upload-mb, generated as it is
   sent, against --max-upload-mb: the 413's time, how much of the body went out, and what
   is left on disk in the files folder and the temp dir;
2. uploads a generated --job-mb .jsonl file of valid chat examples and creates a job on it:
   the upload's and the job creation's time; then the same with a model name that does not
   exist, which a server that checks cheap things first answers without reading the file.
Each phase's peak RSS is printed against the idle server's (the baseline, same run).

    .venv/bin/python bench/server_limits.py                       # 1 GB upload, 200 MB job file
    .venv/bin/python bench/server_limits.py --upload-mb 64 --job-mb 20
    .venv/bin/python bench/server_limits.py --pythonpath /tmp/old/src   # another source tree
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
BOUNDARY = "bench-boundary"
MB = 1024 * 1024
LAUNCH = """
import sys, uvicorn
from tunelab.server import ServeSettings, create_app
settings = ServeSettings(run_worker=False, max_upload_bytes=int(sys.argv[2]))
uvicorn.run(create_app(settings), host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
"""


class Peak:
    """The highest RSS of a process while the block runs."""

    def __init__(self, pid: int) -> None:
        self.process, self.peak = psutil.Process(pid), 0
        self._stop = threading.Event()

    def __enter__(self) -> Peak:
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self.started = time.perf_counter()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self._stop.set()
        self._thread.join()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chunked_body(size: int, sent: list[int]) -> Iterator[bytes]:
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
           f"fine-tune\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
           "filename=\"big.jsonl\"\r\n\r\n").encode()
    block = b"x" * MB
    for _ in range(size // MB):
        sent[0] += len(block)
        yield block
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def job_file(path: Path, size: int) -> int:
    """Valid chat examples up to `size` bytes; returns how many."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        while out.tell() < size:
            out.write(json.dumps({"messages": [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": f"Question {count}: what is {count} plus one?"},
                {"role": "assistant", "content": f"{count} plus one is {count + 1}."}]}) + "\n")
            count += 1
    return count


def tree_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def report(name: str, peak: Peak, baseline: int, extra: str) -> dict:
    print(f"{name:<26} {peak.seconds:7.2f} s  peak RSS {peak.peak / MB:7.1f} MB "
          f"({peak.peak / baseline:4.2f}x idle)  {extra}", flush=True)
    return {"phase": name, "seconds": round(peak.seconds, 3), "peak_rss_mb":
            round(peak.peak / MB, 1), "ratio_to_idle": round(peak.peak / baseline, 2)}


def run(args: argparse.Namespace, work: Path) -> list[dict]:
    home, tmp = work / "home", work / "tmp"
    tmp.mkdir()
    port = free_port()
    env = {**os.environ, "TUNELAB_HOME": str(home), "TMPDIR": str(tmp),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    server = subprocess.Popen([sys.executable, "-c", LAUNCH, str(port),
                               str(args.max_upload_mb * MB)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(base + "/health")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        time.sleep(0.5)
        baseline = psutil.Process(server.pid).memory_info().rss
        print(f"idle server                           RSS {baseline / MB:7.1f} MB "
              f"(the baseline)  load average {os.getloadavg()[0]:.2f}", flush=True)
        results = [{"phase": "idle", "peak_rss_mb": round(baseline / MB, 1)}]
        results.append(upload_phase(args, base, server.pid, baseline, home, tmp))
        results += job_phases(args, base, server.pid, baseline, work)
        return results
    finally:
        server.terminate()
        server.wait(30)


def upload_phase(args: argparse.Namespace, base: str, pid: int, baseline: int,
                 home: Path, tmp: Path) -> dict:
    sent = [0]
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    with Peak(pid) as peak:
        response = httpx.post(base + "/v1/files", headers=headers, timeout=600,
                              content=chunked_body(args.upload_mb * MB, sent))
    left = tree_bytes(home / "server" / "files") + tree_bytes(tmp)
    row = report(f"chunked {args.upload_mb} MB upload", peak, baseline,
                 f"-> {response.status_code}, {sent[0] / MB:.0f} MB sent, "
                 f"{left} bytes left on disk")
    return {**row, "status": response.status_code, "sent_mb": round(sent[0] / MB),
            "left_on_disk": left}


def job_phases(args: argparse.Namespace, base: str, pid: int, baseline: int,
               work: Path) -> list[dict]:
    path = work / "train.jsonl"
    examples = job_file(path, args.job_mb * MB)
    with Peak(pid) as peak, path.open("rb") as handle:
        response = httpx.post(base + "/v1/files", timeout=600, data={"purpose": "fine-tune"},
                              files={"file": ("train.jsonl", handle)})
    rows = [report(f"upload {args.job_mb} MB job file", peak, baseline,
                   f"-> {response.status_code}, {examples} examples")]
    file_id = response.json()["id"]
    with Peak(pid) as peak:
        response = httpx.post(base + "/v1/fine_tuning/jobs", timeout=600,
                              json={"model": MODEL, "training_file": file_id})
    rows.append(report(f"create job on {args.job_mb} MB", peak, baseline,
                       f"-> {response.status_code}"))
    with Peak(pid) as peak:
        response = httpx.post(base + "/v1/fine_tuning/jobs", timeout=600,
                              json={"model": "no/such-model", "training_file": file_id})
    rows.append(report("bad model, same file", peak, baseline,
                       f"-> {response.status_code}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upload-mb", type=int, default=1024)
    parser.add_argument("--max-upload-mb", type=int, default=256)
    parser.add_argument("--job-mb", type=int, default=200)
    parser.add_argument("--pythonpath", help="run the server from this source tree")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tunelab-bench-") as work:
        results = run(args, Path(work))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
