"""A real WebUI server for tests: started on a port Gradio picks itself (no race with another test worker for a
port found free a moment before), its API through gradio_client, its page's handlers over HTTP as the browser
calls them."""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.webui.app import build_app, launch
from utils.webui.context import WebUIContext
from utils.webui.jobs import TrainingJobs
from utils.webui.paths import WebUIConfig

JOB_TIMEOUT_S = 240
HARMLESS_CLI = [sys.executable, "-c", "pass"]  # for servers whose tests must never train


@dataclass
class Server:
    url: str
    ctx: WebUIContext
    app: Any


def serve(config: WebUIConfig, jobs: TrainingJobs | None = None) -> Server:
    """Build and launch the app; Gradio binds the first free port from 7860 (retrying past one taken meanwhile),
    and the URL is read back from the running server."""
    from dataclasses import replace

    ctx = WebUIContext.create(config, jobs)
    app = build_app(ctx)
    launch(app, replace(config, port=None), prevent_thread_lock=True, quiet=True)
    return Server(f"http://127.0.0.1:{app.server_port}/", ctx, app)


def client(server: Server, auth: tuple[str, str] | None = None):
    from gradio_client import Client

    return Client(server.url, verbose=False, download_files=False, auth=auth)


def stop_and_wait(ctx: WebUIContext) -> None:
    if ctx.jobs.status()["running"]:
        ctx.jobs.stop()
        ctx.jobs.wait(JOB_TIMEOUT_S)


def call_handler(server: Server, name: str, *data: Any, timeout: float = 120) -> list[Any]:
    """Run the page's handler `name` (e.g. "import_existing") as the browser does: POST queue/join with its
    fn_index, then read the event stream. Gradio's client refuses the page's private handlers; the HTTP
    interface behind the page does not, so this is what anyone who reaches the server can call."""
    import httpx

    fn_index = next(i for i, f in server.app.fns.items() if getattr(f.fn, "func", f.fn).__name__ == name)
    session = uuid.uuid4().hex
    with httpx.Client(base_url=server.url, timeout=timeout) as http:
        joined = http.post("gradio_api/queue/join", json={"data": list(data), "fn_index": fn_index,
                                                         "session_hash": session, "event_data": None,
                                                         "trigger_id": None})
        joined.raise_for_status()
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[len("data:"):])
                if message.get("msg") == "process_completed":
                    if not message.get("success"):
                        raise AssertionError(f"{name} failed on the server: {message.get('output')}")
                    return message["output"]["data"]
    raise AssertionError(f"{name}: the event stream ended without a result")


def upload(server: Server, path: Path) -> dict:
    """Upload a file as the page does; the FileData the page then sends to a handler."""
    import httpx

    with open(path, "rb") as f:
        r = httpx.post(f"{server.url}gradio_api/upload", files={"files": (path.name, f, "audio/wav")}, timeout=60)
    r.raise_for_status()
    return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": path.name}


def wait_for(jobs: TrainingJobs, condition, timeout: float = 30) -> dict:
    """The job manager's status once `condition(status)` holds; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.status()
        if condition(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"timed out; last status {jobs.status()}")
