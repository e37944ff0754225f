"""The README's run command starts the whole service and Ctrl-C stops all of it."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_run_command_serves_landing_page_and_schema_then_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update({"CLEANROOM_VAR_DIR": str(tmp_path), "PORT": str(port)})
    process = subprocess.Popen(
        ["bash", "scripts/run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        landing = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                landing = httpx.get(base + "/", timeout=2)
                if landing.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert landing is not None and landing.status_code == 200, f"not serving: {process.poll()}"
        assert "For businesses" in landing.text
        schema = httpx.get(base + "/api/v1/schema/", timeout=10)
        assert schema.status_code == 200
        assert "openapi" in schema.text
        assert httpx.get(base + "/healthz", timeout=10).json()["ok"] is True
        assert httpx.get(base + "/static/portal/site.css", timeout=10).status_code == 200
        # The API docs work without the internet: Swagger UI is served by the service.
        docs = httpx.get(base + "/api/docs/", timeout=10).text
        bundle = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
        assert bundle in docs and "cdn.jsdelivr" not in docs
        assert httpx.get(base + bundle, timeout=10).status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert f"Clean room is running at {base}/" in output
    assert "compliance / compliance-demo-pass" in output
    # The demo world: a bulk-seeded population and the README's query already answered.
    assert "Contributors: 10000 synthetic demo contributors" in output
    assert "Query 1 on households by acme: released" in output
    with pytest.raises(httpx.HTTPError):
        httpx.get(base + "/healthz", timeout=2)
