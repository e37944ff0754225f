"""The console scripts people use: cleanroom-issuer issues, cleanroom-wallet signs in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.core.handlers.wsgi import WSGIHandler

from cleanroom.accounts.models import Contributor
from identity import services
from identity.issuer import cli as issuer_cli
from identity.issuer.core import Issuer
from identity.wallet import cli as wallet_cli
from identity.wallet.core import Wallet, WalletError, request_uri_from

PASSPHRASE = "correct horse battery"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_process_service(monkeypatch):
    """The wallet's HTTP client talks to this test's Django app in-process (same database)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    monkeypatch.setattr(
        wallet_cli,
        "_client",
        lambda: httpx.Client(transport=httpx.WSGITransport(app=WSGIHandler())),
    )
    # As Django's test client does: keep the test's connection (and its transaction) open.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEANROOM_WALLET_PASSPHRASE", PASSPHRASE)
    # A cheaper scrypt keeps the suite fast; the cost is stored in the file, so loading works.
    monkeypatch.setattr("identity.wallet.core.SCRYPT_N", 2**10)
    return {"wallet": str(tmp_path / "wallet"), "issuer": str(tmp_path / "issuer")}


def wallet(dirs, *args):
    return wallet_cli.main(["--wallet", dirs["wallet"], *args])


def issuer(dirs, *args):
    return issuer_cli.main(["--dir", dirs["issuer"], *args])


def test_a_new_person_becomes_a_contributor(db, dirs, tmp_path, capsys, in_process_service):
    assert issuer(dirs, "init") == 0
    issuer_did = capsys.readouterr().out.strip()
    services.trusted_issuer_create(
        did=issuer_did, name="Demo", credential_types=["PersonhoodCredential"], actor=None
    )
    assert wallet(dirs, "init") == 0
    did = capsys.readouterr().out.strip()
    assert wallet(dirs, "did") == 0 and capsys.readouterr().out.strip() == did
    assert (
        issuer(
            dirs, "issue", "--subject", did, "--country", "NL", "--out", str(tmp_path / "cred.json")
        )
        == 0
    )
    assert wallet(dirs, "import", str(tmp_path / "cred.json")) == 0
    assert "Imported credential 1: PersonhoodCredential" in capsys.readouterr().out
    assert wallet(dirs, "list") == 0
    assert f"1. PersonhoodCredential  issuer {issuer_did}  format ldp_vc" in capsys.readouterr().out
    assert wallet(dirs, "login", "http://127.0.0.1:8000") == 0
    out = capsys.readouterr().out
    assert f"Verified: signed in as {did}" in out and "API token: " in out
    assert Contributor.objects.filter(did=did).exists()
    # The key and credentials are encrypted at rest; only the DID is in clear.
    stored = (Path(dirs["wallet"]) / "wallet.json").read_text()
    assert (
        "countryOfResidence" not in stored
        and '"d"' not in stored
        and json.loads(stored)["did"] == did
    )


def test_present_answers_a_portal_link(db, dirs, capsys, in_process_service):
    the_issuer = Issuer.generate()
    services.trusted_issuer_create(
        did=the_issuer.did, name="Demo", credential_types=["PersonhoodCredential"], actor=None
    )
    assert wallet(dirs, "init") == 0
    did = capsys.readouterr().out.strip()
    loaded = Wallet.load(Path(dirs["wallet"]), PASSPHRASE)
    loaded.credential_import(the_issuer.issue(subject=did, jwt=True))
    loaded.save(Path(dirs["wallet"]), PASSPHRASE)
    request = services.presentation_request_create()
    assert wallet(dirs, "present", f"http://127.0.0.1:8000/join/{request.pk}/") == 0
    assert "Verified" in capsys.readouterr().out
    # Answering the same request again is refused by the service (request_uri is gone).
    assert wallet(dirs, "present", f"http://127.0.0.1:8000/join/{request.pk}/") == 2
    assert "already answered" in capsys.readouterr().err


def test_refusal_is_printed_with_its_reason(db, dirs, capsys, in_process_service):
    untrusted = Issuer.generate()
    assert wallet(dirs, "init") == 0
    did = capsys.readouterr().out.strip()
    loaded = Wallet.load(Path(dirs["wallet"]), PASSPHRASE)
    loaded.credential_import(untrusted.issue(subject=did))
    loaded.save(Path(dirs["wallet"]), PASSPHRASE)
    request = services.presentation_request_create()
    # The wallet would not pick a credential the request does not accept...
    assert wallet(dirs, "present", f"http://127.0.0.1:8000/join/{request.pk}/") == 2
    assert "no credential the request accepts" in capsys.readouterr().err
    assert Contributor.objects.count() == 0


def test_wrong_passphrase(dirs, capsys, monkeypatch):
    assert wallet(dirs, "init") == 0
    monkeypatch.setenv("CLEANROOM_WALLET_PASSPHRASE", "not the passphrase")
    assert wallet(dirs, "list") == 2
    assert "Wrong passphrase" in capsys.readouterr().err


def test_import_refuses_a_credential_for_another_did(dirs, tmp_path, capsys):
    assert wallet(dirs, "init") == 0
    other = Issuer.generate().issue(subject=Wallet.generate().did)
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert wallet(dirs, "import", str(tmp_path / "other.json")) == 2
    assert "issued to another DID" in capsys.readouterr().err


def test_issuer_status_list_and_revoke(dirs, tmp_path, capsys):
    assert issuer(dirs, "init") == 0
    assert (
        issuer(
            dirs,
            "status-list",
            "create",
            "--url",
            "https://status.example/1",
            "--kind",
            "BitstringStatusList",
        )
        == 0
    )
    holder = Wallet.generate().did
    assert (
        issuer(
            dirs,
            "issue",
            "--subject",
            holder,
            "--status",
            "--jwt",
            "--out",
            str(tmp_path / "c.jwt"),
        )
        == 0
    )
    assert "status index 0" in capsys.readouterr().err
    assert issuer(dirs, "revoke", "0", "--out", str(tmp_path / "list.json")) == 0
    document = json.loads((tmp_path / "list.json").read_text())
    from identity import statuslist

    bits = statuslist.bitstring_decode(document["credentialSubject"]["encodedList"])
    assert statuslist.bit_is_set(bits, 0) and not statuslist.bit_is_set(bits, 1)
    assert document["type"] == ["VerifiableCredential", "BitstringStatusListCredential"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "openid4vp://authorize?client_id=x&request_uri=https%3A%2F%2Fa.example%2Fr%2F1%2F",
            "https://a.example/r/1/",
        ),
        (
            "http://h:8000/join/3f2b3c4d-1111-2222-3333-444455556666/",
            "http://h:8000/api/v1/identity/presentation-requests/3f2b3c4d-1111-2222-3333-444455556666/",
        ),
        (
            "https://a.example/api/v1/identity/presentation-requests/x/",
            "https://a.example/api/v1/identity/presentation-requests/x/",
        ),
    ],
)
def test_request_uri_from_links(url, expected):
    assert request_uri_from(url) == expected


def test_request_uri_from_nonsense():
    with pytest.raises(WalletError):
        request_uri_from("ftp://example.com/x")


@pytest.mark.slow
def test_console_script_against_a_live_server(live_server, settings, tmp_path, transactional_db):
    """The real `cleanroom-wallet` process against a served app: a contributor is created."""
    settings.CLEANROOM_ORIGIN = live_server.url
    the_issuer = Issuer.generate()
    services.trusted_issuer_create(
        did=the_issuer.did, name="Demo", credential_types=["PersonhoodCredential"], actor=None
    )
    env = {
        **os.environ,
        "CLEANROOM_WALLET_PASSPHRASE": PASSPHRASE,
        "CLEANROOM_WALLET": str(tmp_path / "w"),
    }
    script = Path(sys.executable).parent / "cleanroom-wallet"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
        )

    init = run("init")
    assert init.returncode == 0, init.stderr
    did = init.stdout.strip()
    (tmp_path / "cred.json").write_text(json.dumps(the_issuer.issue(subject=did)))
    assert run("import", str(tmp_path / "cred.json")).returncode == 0
    login = run("login", live_server.url)
    assert login.returncode == 0, login.stderr  # also: no crash at exit after using didkit
    assert f"signed in as {did}" in login.stdout
    assert Contributor.objects.filter(did=did).exists()


def test_the_seeded_sd_jwt_commands_sign_a_person_in_and_revocation_stops_them(
    db, settings, tmp_path, capsys, in_process_service, monkeypatch
):
    """What seed_demo prints: the issuer (published by the service) issues a PID-like SD-JWT VC
    to the wallet's holder key; the wallet signs in disclosing only the age predicate."""
    settings.VAR_DIR = tmp_path
    dirs = {"wallet": str(tmp_path / "wallet"), "issuer": str(tmp_path / "demo-issuer")}
    monkeypatch.setenv("CLEANROOM_WALLET_PASSPHRASE", PASSPHRASE)
    monkeypatch.setattr("identity.wallet.core.SCRYPT_N", 2**10)
    origin = settings.CLEANROOM_ORIGIN
    assert issuer(dirs, "init", "--url", f"{origin}/demo-issuer") == 0
    assert issuer(dirs, "status-list", "create", "--kind", "TokenStatusList", "--url", f"{origin}/demo-issuer/status-list") == 0
    services.trusted_issuer_create(did=f"{origin}/demo-issuer", name="Demo", vcts=["urn:eudi:pid:1"], actor=None)
    capsys.readouterr()
    assert wallet(dirs, "init") == 0
    capsys.readouterr()
    assert wallet(dirs, "jwk") == 0
    holder_jwk = capsys.readouterr().out.strip()
    assert '"d"' not in holder_jwk
    out = str(tmp_path / "pid.txt")
    assert issuer(dirs, "issue", "--format", "dc+sd-jwt", "--holder-jwk", holder_jwk, "--birthdate", "1990-05-01", "--status", "--out", out) == 0
    assert "status index 0" in capsys.readouterr().err
    assert wallet(dirs, "import", out) == 0
    assert "Imported credential 1: urn:eudi:pid:1" in capsys.readouterr().out
    assert wallet(dirs, "login", origin) == 0
    printed = capsys.readouterr().out
    assert "Verified: signed in as did:jwk:" in printed and "Credentials: urn:eudi:pid:1" in printed
    assert issuer(dirs, "revoke", "--token", "0") == 0
    from identity import statuslist

    statuslist.CACHE.clear()
    assert wallet(dirs, "login", origin) == 1
    assert "revoked" in capsys.readouterr().err
    assert Contributor.objects.count() == 1
    assert issuer(dirs, "metadata") == 0
    assert json.loads(capsys.readouterr().out)["issuer"] == f"{origin}/demo-issuer"
