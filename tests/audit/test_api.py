"""The audit API: compliance reads events, verification, export and proofs; others cannot."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from audit import chain, keys
from audit.models import AuditEvent
from audit.services import audit_record, checkpoint_create
from audit.verify import verify_export

pytestmark = pytest.mark.django_db


@pytest.fixture
def officer(api, compliance_user):
    return api(compliance_user)


def test_only_compliance_reads_the_log(api, business_user, contributor) -> None:
    # Signed in with another role: 403; not signed in: 401 (a token is asked for).
    for user, status in ((business_user, 403), (contributor.user, 403), (None, 401)):
        client = api(user)
        for path in ("events/", "verify/", "export/", "checkpoints/", "proofs/inclusion/?seq=1"):
            response = client.get(f"/api/v1/audit/{path}")
            assert response.status_code == status, (path, response.status_code)
            assert "detail" in response.json()
    assert api(business_user).post("/api/v1/audit/checkpoints/").status_code == 403


def test_events_filter_by_action_actor_dataset_and_time(officer, compliance_user, make_log) -> None:
    make_log(16, actor=compliance_user)
    audit_record(action="cleanroom.query.submitted", actor=None, dataset="other")
    body = officer.get("/api/v1/audit/events/", {"action": "cleanroom.budget.charged"}).json()
    assert body["count"] == 2
    assert [r["payload"]["n"] for r in body["results"]] == [2, 10]
    assert body["results"][0] == {
        **body["results"][0],
        "actor": f"compliance:{compliance_user.pk}",
        "dataset": "households",
        "subject": "query:1",
    }
    assert (
        officer.get("/api/v1/audit/events/", {"action": "identity.presentation."}).json()["count"]
        == 4
    )
    assert officer.get("/api/v1/audit/events/", {"action": "identity.*"}).json()["count"] == 4
    assert (
        officer.get("/api/v1/audit/events/", {"actor": "system"}).json()["count"] == 2
    )  # officer created + one
    assert (
        officer.get("/api/v1/audit/events/", {"actor": f"compliance:{compliance_user.pk}"}).json()[
            "count"
        ]
        == 16
    )
    assert (
        officer.get("/api/v1/audit/events/", {"actor": str(compliance_user.pk)}).json()["count"]
        == 16
    )
    assert officer.get("/api/v1/audit/events/", {"dataset": "other"}).json()["count"] == 1
    tenth = AuditEvent.objects.get(seq=10)
    since = officer.get("/api/v1/audit/events/", {"since": tenth.at.isoformat()}).json()
    assert since["count"] == 9 and since["results"][0]["seq"] == 10
    until = officer.get("/api/v1/audit/events/", {"until": tenth.at.isoformat()}).json()
    assert until["count"] == 9 and until["results"][-1]["seq"] == 9
    today = tenth.at.date().isoformat()
    assert (
        officer.get("/api/v1/audit/events/", {"since": today, "until": today}).json()["count"] == 18
    )


def test_events_are_paged(officer, make_log) -> None:
    make_log(11)
    first = officer.get("/api/v1/audit/events/", {"page_size": 5}).json()
    assert (first["count"], first["page"], first["previous"]) == (12, 1, None)
    assert [r["seq"] for r in first["results"]] == [1, 2, 3, 4, 5]
    third = officer.get(first["next"].replace("page=2", "page=3")).json()
    assert [r["seq"] for r in third["results"]] == [11, 12] and third["next"] is None
    assert officer.get("/api/v1/audit/events/", {"page_size": 10000}).json()["page_size"] == 500


@pytest.mark.parametrize(
    "params, field",
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-40"}, "until"),
        ({"page": "0"}, "page"),
        ({"page_size": "many"}, "page_size"),
        ({"actor": "the boss"}, "actor"),
    ],
)
def test_bad_filters_are_a_clear_400(officer, params, field) -> None:
    response = officer.get("/api/v1/audit/events/", params)
    assert response.status_code == 400
    assert field in response.json()["detail"]


def test_since_after_until_is_refused(officer) -> None:
    response = officer.get("/api/v1/audit/events/", {"since": "2026-11-30", "until": "2026-11-01"})
    assert response.status_code == 400 and "since must be before until" in response.json()["detail"]


def test_verify_reports_ok_entries_head_and_the_latest_checkpoint(officer, make_log) -> None:
    make_log(6)
    checkpoint_create()
    body = officer.get("/api/v1/audit/verify/").json()
    head = AuditEvent.objects.order_by("-seq").first()
    assert head is not None
    assert (body["ok"], body["entries"], body["head"], body["first_bad_entry"]) == (
        True,
        7,
        head.hash,
        None,
    )
    assert body["latest_checkpoint"]["tree_size"] == 7
    assert body["latest_checkpoint"]["signed_note"].startswith("cleanroom-audit/v1\n7\n")


def test_the_export_verifies_offline_with_the_published_key(
    officer, api, make_log, tmp_path
) -> None:
    make_log(9)
    checkpoint_create()
    make_log(2)  # an unsigned tail
    response = officer.get("/api/v1/audit/export/")
    assert response.status_code == 200 and response["Content-Type"] == "application/jsonl"
    data = b"".join(response.streaming_content)
    lines = [json.loads(line) for line in data.splitlines()]
    assert [line["kind"] for line in lines] == ["header"] + ["entry"] * 12 + ["checkpoint"]
    pem = api(None).get("/api/v1/audit/public-key/").json()["public_key"]
    report = verify_export(io.BytesIO(data), pem.encode())
    assert (report.ok, report.entries, report.unsigned_tail, report.latest_checkpoint) == (
        True,
        12,
        2,
        10,
    )
    # the command line an auditor runs
    (tmp_path / "export.jsonl").write_bytes(data)
    (tmp_path / "key.pem").write_text(pem)
    from audit.verify import main

    assert (
        main([str(tmp_path / "export.jsonl"), "--key", str(tmp_path / "key.pem"), "--strict"]) == 0
    )
    other = tmp_path / "other.pem"
    from Crypto.PublicKey import ECC

    other.write_text(ECC.generate(curve="ed25519").public_key().export_key(format="PEM"))
    assert main([str(tmp_path / "export.jsonl"), "--key", str(other)]) == 1
    (tmp_path / "junk.jsonl").write_text("not json\n")
    assert main([str(tmp_path / "junk.jsonl"), "--key", str(tmp_path / "key.pem")]) == 2


def test_the_verifier_runs_as_a_module_without_django(officer, make_log, tmp_path) -> None:
    import subprocess
    import sys

    make_log(3)
    checkpoint_create()
    data = b"".join(officer.get("/api/v1/audit/export/").streaming_content)
    (tmp_path / "export.jsonl").write_bytes(data)
    (tmp_path / "key.pem").write_text(keys.public_key_pem())
    script = (
        "import sys, runpy; sys.argv = ['audit.verify', *sys.argv[1:]];"
        "runpy.run_module('audit.verify', run_name='__main__');"
    )
    check = "assert not [m for m in sys.modules if m.startswith(('django', 'cleanroom'))]"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script.replace("runpy.run_module", "0\ntry:\n runpy.run_module")
            + f"\nexcept SystemExit as e:\n {check}; raise",
            str(tmp_path / "export.jsonl"),
            "--key",
            str(tmp_path / "key.pem"),
        ],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin",
            "PYTHONPATH": str(__import__("pathlib").Path(chain.__file__).parent.parent),
        },
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True


def test_inclusion_proofs_verify_for_every_entry(officer, make_log) -> None:
    make_log(12)
    checkpoint = checkpoint_create()
    assert checkpoint is not None
    root = bytes.fromhex(checkpoint.root)
    for seq in range(1, 14):
        body = officer.get("/api/v1/audit/proofs/inclusion/", {"seq": seq}).json()
        assert body["tree_size"] == 13 and body["root"] == checkpoint.root
        leaf = chain.leaf_hash(body["entry"].encode())
        assert leaf.hex() == body["leaf_hash"]
        assert chain.verify_inclusion(
            leaf, seq - 1, 13, [bytes.fromhex(p) for p in body["proof"]], root
        )


def test_consistency_proofs_between_checkpoints_verify(officer, make_log) -> None:
    sizes = []
    for batch in (2, 3, 6):
        make_log(batch)
        taken = checkpoint_create()
        assert taken is not None
        sizes.append(taken.tree_size)
    for first in sizes:
        body = officer.get("/api/v1/audit/proofs/consistency/", {"first": first}).json()
        assert body["second"] == sizes[-1]
        proof = [bytes.fromhex(p) for p in body["proof"]]
        assert chain.verify_consistency(
            first,
            sizes[-1],
            bytes.fromhex(body["first_root"]),
            bytes.fromhex(body["second_root"]),
            proof,
        )


@pytest.mark.parametrize(
    "path, params, status, words",
    [
        ("inclusion", {}, 400, "seq is required"),
        ("inclusion", {"seq": "x"}, 400, "seq must be a positive"),
        ("inclusion", {"seq": 99}, 404, "no audit entry 99"),
        ("inclusion", {"seq": 1, "tree_size": 2}, 404, "no signed checkpoint of size 2"),
        ("inclusion", {"seq": 5}, 409, "newer than checkpoint 3"),
        ("consistency", {}, 400, "first is required"),
        ("consistency", {"first": 3, "second": 1}, 404, "no signed checkpoint of size 1"),
    ],
)
def test_proof_requests_that_cannot_be_answered_are_clear(
    officer, make_log, path, params, status, words
) -> None:
    make_log(2)
    checkpoint_create()
    make_log(2)
    response = officer.get(f"/api/v1/audit/proofs/{path}/", params)
    assert response.status_code == status
    assert words in response.json()["detail"]


def test_a_checkpoint_on_demand(officer, make_log) -> None:
    assert (
        officer.post("/api/v1/audit/checkpoints/").status_code == 201
    )  # the officer's own creation
    make_log(2)
    created = officer.post("/api/v1/audit/checkpoints/")
    assert created.status_code == 201 and created.json()["tree_size"] == 3
    again = officer.post("/api/v1/audit/checkpoints/")
    assert again.status_code == 200 and again.json()["tree_size"] == 3
    assert [c["tree_size"] for c in officer.get("/api/v1/audit/checkpoints/").json()] == [3, 1]


def test_verify_command_exits_non_zero_on_a_bad_log(make_log, capsys) -> None:
    make_log(2)
    call_command("audit_verify")
    assert json.loads(capsys.readouterr().out)["ok"] is True
