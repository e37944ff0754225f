"""identity.jose: our signature checks agree with jwcrypto's signing for every allowed algorithm,
and refuse what is not allowed before looking at a key."""

from __future__ import annotations

import json

import pytest
from jwcrypto import jwk

from identity import jose

CURVES = {"ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"), "EdDSA": ("OKP", "Ed25519")}


def _key(algorithm):
    kty, crv = CURVES[algorithm]
    return json.loads(jwk.JWK.generate(kty=kty, crv=crv).export_private())


@pytest.mark.parametrize("algorithm", list(CURVES))
def test_every_allowed_algorithm_round_trips_and_tampering_is_caught(algorithm):
    key = _key(algorithm)
    token = jose.jws_sign({"hello": "world"}, key, header={"alg": algorithm, "typ": "JWT"})
    compact = jose.jws_decode(token, "token")
    jose.jws_verify(compact, jose.public_jwk(key), "token")
    head, payload, signature = token.split(".")
    raw = bytearray(jose.b64url_decode(signature))
    raw[3] ^= 1
    for bad in (
        ".".join([head, payload, jose.b64url_encode(bytes(raw))]),
        ".".join([head, payload, signature[:-4]]),
        ".".join([head, jose.b64url_encode(b'{"hello":"mars"}'), signature]),
    ):
        with pytest.raises(jose.JoseError) as refused:
            jose.jws_verify(jose.jws_decode(bad, "token"), jose.public_jwk(key), "token")
        assert refused.value.code == "bad_signature"
    with pytest.raises(jose.JoseError) as refused:
        jose.jws_verify(compact, jose.public_jwk(_key(algorithm)), "token")
    assert refused.value.code == "bad_signature"


def test_a_key_of_another_type_is_refused_before_verifying():
    token = jose.jws_sign({}, _key("ES256"), header={"alg": "ES256"})
    with pytest.raises(jose.JoseError) as refused:
        jose.jws_verify(jose.jws_decode(token, "t"), jose.public_jwk(_key("ES384")), "t")
    assert refused.value.code == "wrong_key_type"


@pytest.mark.parametrize("algorithm", ["none", "HS256", "HS512", "RS256", "PS256", None, 7])
def test_algorithms_outside_the_allow_list(algorithm):
    token = ".".join([jose.b64url_encode(json.dumps({"alg": algorithm}).encode()), jose.b64url_encode(b"{}"), "AA"])
    with pytest.raises(jose.JoseError) as refused:
        jose.jws_verify(jose.jws_decode(token, "t"), jose.public_jwk(_key("ES256")), "t")
    assert refused.value.code == "alg_not_allowed"


def test_a_point_off_the_curve_is_refused():
    key = jose.public_jwk(_key("ES256"))
    token = jose.jws_sign({}, _key("ES256"), header={"alg": "ES256"})
    bogus = {**key, "y": key["x"]}
    with pytest.raises(jose.JoseError):
        jose.jws_verify(jose.jws_decode(token, "t"), bogus, "t")


def test_jwe_round_trip_and_limits():
    key = {**jose.key_generate(algorithm="ECDH-ES"), "kid": "k1"}
    for enc in jose.CONTENT_ENCRYPTIONS:
        assert jose.jwe_decrypt(jose.jwe_encrypt(b"secret", key, enc=enc), key) == b"secret"
    with pytest.raises(jose.JoseError):
        jose.jwe_encrypt(b"x", key, enc="A128CBC-HS256")
    other = {**jose.key_generate(algorithm="ECDH-ES"), "kid": "k1"}
    with pytest.raises(jose.JoseError) as refused:
        jose.jwe_decrypt(jose.jwe_encrypt(b"secret", other), key)
    assert refused.value.code == "undecryptable"
