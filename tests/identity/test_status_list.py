"""Revocation by status list: our bit order, HTTPS-only fetching with limits, fail closed."""

from __future__ import annotations

import json

import pytest

from identity import statuslist
from identity.statuslist import FetchPolicy, StatusError, StatusFetchError
from tests.identity.helpers import assert_refused

pytestmark = pytest.mark.django_db


def test_bits_count_from_the_most_significant_bit():
    bits = statuslist.bits_with([0, 9], size=16)
    assert bits == bytes([0b1000_0000, 0b0100_0000])
    assert statuslist.bit_is_set(bits, 0) and statuslist.bit_is_set(bits, 9)
    assert not statuslist.bit_is_set(bits, 7)  # didkit's old order would read bit 0 here
    with pytest.raises(StatusError, match="outside the status list"):
        statuslist.bit_is_set(bits, 16)


@pytest.mark.parametrize("multibase", [True, False])
def test_encoded_list_round_trip(multibase):
    bits = statuslist.bits_with([3, 131071], size=131072)
    encoded = statuslist.bitstring_encode(bits, multibase=multibase)
    assert encoded.startswith("u") is multibase
    assert statuslist.bitstring_decode(encoded) == bits


def test_decompression_bomb_is_refused():
    import base64
    import gzip

    bomb = base64.urlsafe_b64encode(gzip.compress(bytes(8 * 1024 * 1024))).decode()
    with pytest.raises(StatusError, match="larger than allowed"):
        statuslist.bitstring_decode(bomb)


def test_plain_http_is_refused():
    with pytest.raises(StatusFetchError, match="HTTPS only"):
        statuslist.http_fetch("http://status.example/list", policy=FetchPolicy())


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "[::1]", "localhost"]
)
def test_private_and_loopback_addresses_are_refused(host):
    with pytest.raises(StatusFetchError, match="private or loopback"):
        statuslist.url_check(f"https://{host}/list", policy=FetchPolicy())


def _revocable(issuer, wallet, status_server, kind, name, jwt=False):
    issuer.status_list_create(url=status_server.url(name), kind=kind, size=131072)
    credential = issuer.issue(subject=wallet.did, with_status=True, jwt=jwt)
    return credential


@pytest.mark.parametrize("kind", ["StatusList2021", "BitstringStatusList"])
def test_revoked_credential_is_refused(
    trusted_issuer,
    issuer,
    wallet,
    presentation_request,
    request_object,
    submit,
    status_server,
    kind,
):
    credential = _revocable(issuer, wallet, status_server, kind, f"revoked-{kind}")
    issuer.revoke(0)
    status_server.publish(f"revoked-{kind}", issuer.status_list_credential())
    vp = wallet.present(request_object, credential=credential)
    body = assert_refused(submit(request_object, vp), "revoked", presentation_request)
    assert body["detail"] == "credential 1: the credential has been revoked"


@pytest.mark.parametrize("kind", ["StatusList2021", "BitstringStatusList"])
def test_unrevoked_credential_is_accepted_and_the_list_cached(
    trusted_issuer, issuer, wallet, request_object, submit, status_server, kind
):
    from identity import selectors, services

    credential = _revocable(
        issuer, wallet, status_server, kind, f"fine-{kind}", jwt=kind == "BitstringStatusList"
    )
    issuer.revoke(7)  # someone else's bit; ours (0) is clear
    status_server.publish(f"fine-{kind}", issuer.status_list_credential())
    response = submit(request_object, wallet.present(request_object, credential=credential))
    assert response.status_code == 200, response.json()
    other = selectors.request_object(services.presentation_request_create())
    assert submit(other, wallet.present(other, credential=credential)).status_code == 200
    assert status_server.requests == [f"/fine-{kind}"]  # fetched once, then cached


def test_revocation_takes_effect_when_the_cache_expires(
    trusted_issuer, issuer, wallet, request_object, submit, status_server, settings
):
    from identity import selectors, services

    settings.CLEANROOM_STATUS_LIST_CACHE_SECONDS = 0
    credential = _revocable(issuer, wallet, status_server, "StatusList2021", "later")
    status_server.publish("later", issuer.status_list_credential())
    assert (
        submit(request_object, wallet.present(request_object, credential=credential)).status_code
        == 200
    )
    issuer.revoke(0)
    status_server.publish("later", issuer.status_list_credential())
    again = selectors.request_object(services.presentation_request_create())
    response = submit(again, wallet.present(again, credential=credential))
    assert response.json()["errors"][0]["code"] == "revoked"


def test_unreachable_status_list_fails_closed(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit, status_server
):
    credential = _revocable(issuer, wallet, status_server, "StatusList2021", "missing")
    status_server.unpublish("missing")
    body = assert_refused(
        submit(request_object, wallet.present(request_object, credential=credential)),
        "status_unavailable",
        presentation_request,
    )
    assert "answered HTTP 404" in body["detail"]


def test_status_list_on_a_closed_port_fails_closed(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit, status_server
):
    issuer.status_list_create(url="https://127.0.0.1:1/list")
    credential = issuer.issue(subject=wallet.did, with_status=True)
    body = assert_refused(
        submit(request_object, wallet.present(request_object, credential=credential)),
        "status_unavailable",
        presentation_request,
    )
    assert "unreachable" in body["detail"]


def test_untrusted_certificate_fails_closed(
    trusted_issuer,
    issuer,
    wallet,
    presentation_request,
    request_object,
    submit,
    status_server,
    settings,
):
    settings.CLEANROOM_STATUS_LIST_CA_BUNDLE = None  # the system CAs do not know our test CA
    credential = _revocable(issuer, wallet, status_server, "StatusList2021", "tls")
    status_server.publish("tls", issuer.status_list_credential())
    assert_refused(
        submit(request_object, wallet.present(request_object, credential=credential)),
        "status_unavailable",
        presentation_request,
    )


def test_oversized_status_list_fails_closed(
    trusted_issuer,
    issuer,
    wallet,
    presentation_request,
    request_object,
    submit,
    status_server,
    settings,
):
    settings.CLEANROOM_STATUS_LIST_MAX_BYTES = 1000
    credential = _revocable(issuer, wallet, status_server, "StatusList2021", "big")
    status_server.publish("big", b"{" + b" " * 5000 + b"}")
    body = assert_refused(
        submit(request_object, wallet.present(request_object, credential=credential)),
        "status_unavailable",
        presentation_request,
    )
    assert "larger than 1000 bytes" in body["detail"]


def test_status_list_from_another_issuer_is_refused(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit, status_server
):
    from identity.issuer.core import Issuer

    credential = _revocable(issuer, wallet, status_server, "StatusList2021", "forged")
    impostor = Issuer.generate()
    impostor.status_list_create(url=status_server.url("forged"))
    status_server.publish("forged", impostor.status_list_credential())
    body = assert_refused(
        submit(request_object, wallet.present(request_object, credential=credential)),
        "status_invalid",
        presentation_request,
    )
    assert "not issued by the credential's issuer" in body["detail"]


def test_tampered_status_list_is_refused(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit, status_server
):
    credential = _revocable(issuer, wallet, status_server, "StatusList2021", "tampered")
    issuer.revoke(0)
    document = issuer.status_list_credential()
    document["credentialSubject"]["encodedList"] = statuslist.bitstring_encode(
        bytes(16384), multibase=False
    )
    status_server.publish("tampered", document)
    body = assert_refused(
        submit(request_object, wallet.present(request_object, credential=credential)),
        "status_invalid",
        presentation_request,
    )
    assert "signature does not verify" in body["detail"]


@pytest.mark.parametrize(
    ("peer", "refused"),
    [(("127.0.0.1", 443), True), (("10.0.0.5", 443), True), (("93.184.215.14", 443), False)],
)
def test_the_connected_peer_is_checked_too(peer, refused):
    """DNS may answer differently at connect time than at check time (rebinding)."""
    import httpx

    class Stream:
        def get_extra_info(self, key):
            return peer if key == "server_addr" else None

    response = httpx.Response(200, extensions={"network_stream": Stream()})
    if refused:
        with pytest.raises(StatusFetchError, match="private or loopback"):
            statuslist._peer_check(response, "https://status.example/l", policy=FetchPolicy())
    else:
        statuslist._peer_check(response, "https://status.example/l", policy=FetchPolicy())


def test_a_forged_credential_never_makes_us_fetch(
    trusted_issuer, issuer, wallet, presentation_request, request_object, submit, status_server
):
    """Status lists are fetched only for credentials whose signatures verified (no SSRF by forgery)."""
    credential = _revocable(issuer, wallet, status_server, "StatusList2021", "never")
    credential["credentialStatus"]["statusListCredential"] = status_server.url("attacker-chosen")
    vp = wallet.present(request_object, credential=credential)
    assert_refused(submit(request_object, vp), "bad_credential_signature", presentation_request)
    assert status_server.requests == []


def test_suspension_purpose_is_read_from_a_suspension_list(issuer):
    from identity import verification

    issuer.status_list_create(url="https://status.example/s")
    issuer.revoke(3)
    document = issuer.status_list_credential()
    document.pop("proof")
    document["credentialSubject"]["statusPurpose"] = "suspension"
    signed = issuer.sign(document)
    entry = {**issuer.status_entry(3), "statusPurpose": "suspension"}
    fetch = lambda url: json.dumps(signed).encode()  # noqa: E731
    with pytest.raises(statuslist.StatusRevoked, match="suspended"):
        verification.status_entry_check(entry, issuer.did, fetch=fetch, cache_seconds=0)
    # The same list does not answer for another purpose.
    with pytest.raises(StatusError, match="another status purpose"):
        verification.status_entry_check(
            issuer.status_entry(3), issuer.did, fetch=fetch, cache_seconds=0
        )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "RevocationList2020Status"}, "unsupported"),
        (
            {"type": "StatusList2021Entry", "statusPurpose": "message"},
            "purpose 'message' is unsupported",
        ),
        (
            {"type": "StatusList2021Entry", "statusPurpose": "revocation", "statusListIndex": "-1"},
            "non-negative",
        ),
        (
            {"type": "StatusList2021Entry", "statusPurpose": "revocation", "statusListIndex": "x"},
            "non-negative",
        ),
        (
            {"type": "StatusList2021Entry", "statusPurpose": "revocation", "statusListIndex": "1"},
            "not a URL",
        ),
    ],
)
def test_bad_status_entries_are_refused(entry, message):
    from identity import verification

    with pytest.raises(StatusError, match=message):
        verification.status_entry_check(
            entry, "did:key:z6Mk", fetch=lambda url: b"", cache_seconds=0
        )


@pytest.mark.parametrize("kind", ["StatusList2021", "BitstringStatusList"])
def test_a_status_list_published_as_a_jwt_is_read(
    trusted_issuer,
    issuer,
    wallet,
    presentation_request,
    request_object,
    submit,
    status_server,
    kind,
):
    credential = _revocable(issuer, wallet, status_server, kind, f"jwt-{kind}")
    issuer.revoke(0)
    status_server.publish(f"jwt-{kind}", issuer.status_list_credential(jwt=True))
    vp = wallet.present(request_object, credential=credential)
    assert_refused(submit(request_object, vp), "revoked", presentation_request)
