"""Identity fixtures: a demo issuer the registry trusts, wallets, requests, and a local HTTPS
server (with a test CA made by openssl) that serves status lists."""

from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from identity import selectors, services, statuslist
from identity.issuer.core import Issuer
from identity.wallet.core import Wallet


@pytest.fixture(autouse=True)
def _fresh_status_cache() -> Iterator[None]:
    statuslist.CACHE.clear()
    yield
    statuslist.CACHE.clear()


@pytest.fixture(scope="session")
def issuer_key() -> str:
    return Issuer.generate().key


@pytest.fixture
def issuer(issuer_key: str) -> Issuer:
    return Issuer(key=issuer_key, name="Test personhood issuer")


@pytest.fixture
def trusted_issuer(db: Any, issuer: Issuer) -> Any:
    return services.trusted_issuer_create(
        did=issuer.did, name=issuer.name, credential_types=["PersonhoodCredential"], actor=None
    )


@pytest.fixture
def wallet() -> Wallet:
    return Wallet.generate()


@pytest.fixture
def presentation_request(db: Any) -> Any:
    return services.presentation_request_create()


@pytest.fixture
def request_object(presentation_request: Any) -> dict[str, Any]:
    return selectors.request_object(presentation_request)


def post_vp_token(request_obj: dict[str, Any], vp_token: Any) -> Any:
    """POST {"vp_token": ...} to the request's response_uri through the real API."""
    path = urlsplit(request_obj["response_uri"]).path
    return APIClient().post(
        path, data=json.dumps({"vp_token": vp_token}), content_type="application/json"
    )


@pytest.fixture
def submit() -> Callable[[dict[str, Any], Any], Any]:
    return post_vp_token


# --- a local HTTPS server for status lists -----------------------------------------------------


class StatusServer:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.requests: list[str] = []

    def url(self, name: str) -> str:
        return f"https://localhost:{self.port}/{name}"

    def publish(self, name: str, document: dict[str, Any] | str | bytes) -> str:
        data = (
            document
            if isinstance(document, bytes)
            else (document if isinstance(document, str) else json.dumps(document)).encode()
        )
        (self.root / name).write_bytes(data)
        return self.url(name)

    def unpublish(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA and a localhost certificate signed by it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test CA")
    directory = tmp_path_factory.mktemp("ca")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Clean room test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=directory,
    )
    (directory / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=directory,
    )
    return directory


@pytest.fixture(scope="session")
def _https_server(
    test_ca: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StatusServer]:
    root = tmp_path_factory.mktemp("status-lists")
    holder: dict[str, StatusServer] = {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:  # noqa: N802
            holder["server"].requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(test_ca / "server.pem", test_ca / "server.key")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    server = StatusServer(root, httpd.server_address[1])
    holder["server"] = server
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    httpd.shutdown()


@pytest.fixture
def status_server(_https_server: StatusServer, test_ca: Path, settings: Any) -> StatusServer:
    """The local HTTPS server, with the verifier allowed to reach it (tests only)."""
    settings.CLEANROOM_STATUS_LIST_ALLOW_PRIVATE = True
    settings.CLEANROOM_STATUS_LIST_CA_BUNDLE = str(test_ca / "ca.pem")
    settings.CLEANROOM_STATUS_LIST_TIMEOUT_SECONDS = 3
    _https_server.requests.clear()
    return _https_server
