"""Status lists (StatusList2021 and Bitstring Status List): bit parsing and safe fetching.

Our own code, not didkit's: didkit 0.3.3 reads the bits least-significant first (the order of
the withdrawn RevocationList2020 drafts), while both W3C specifications number bits from the
most significant bit of the first byte. Index 0 is therefore `bytes[0] & 0x80`.

Fetching is where a verifier can be turned against its own network, so it is strict: HTTPS
only, no redirects, no private, loopback, link-local or otherwise non-public addresses (tests
turn that off for a local HTTPS server with a test CA), a timeout, a size cap on the body and
on the decompressed list, and a short cache of lists that verified.
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

ENTRY_TYPES = {
    "StatusList2021Entry": "StatusList2021",
    "BitstringStatusListEntry": "BitstringStatusList",
}
LIST_CREDENTIAL_TYPES = {
    "StatusList2021": "StatusList2021Credential",
    "BitstringStatusList": "BitstringStatusListCredential",
}
SUPPORTED_PURPOSES = ("revocation", "suspension")
# 16 KiB compressed is the spec's minimum list size; a list never needs more than this.
MAX_DECOMPRESSED_BYTES = 2 * 1024 * 1024


class StatusError(Exception):
    """The status could not be established: the credential is refused (fail closed)."""


class StatusRevoked(StatusError):
    """The credential's bit is set: revoked or suspended."""


class StatusFetchError(StatusError):
    """The list could not be fetched (unreachable, too big, not HTTPS, private address)."""


# --- the bitstring ---------------------------------------------------------------------------


def bitstring_encode(bits: bytes, *, multibase: bool) -> str:
    """GZIP then base64url; Bitstring Status List adds the multibase prefix 'u'."""
    encoded = base64.urlsafe_b64encode(gzip.compress(bits, mtime=0)).decode().rstrip("=")
    return ("u" + encoded) if multibase else encoded


def bitstring_decode(encoded: str) -> bytes:
    """The raw bitstring of an `encodedList` (multibase 'u' or plain base64/base64url, GZIP)."""
    if not isinstance(encoded, str) or not encoded:
        raise StatusError("the status list has no encodedList")
    text = encoded[1:] if encoded.startswith("u") else encoded
    text = text.replace("+", "-").replace("/", "_").rstrip("=")
    try:
        compressed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise StatusError("the status list's encodedList is not base64") from exc
    decompressor = zlib.decompressobj(wbits=31)  # gzip container
    try:
        bits = decompressor.decompress(compressed, MAX_DECOMPRESSED_BYTES + 1)
    except zlib.error as exc:
        raise StatusError("the status list's encodedList is not GZIP data") from exc
    if len(bits) > MAX_DECOMPRESSED_BYTES or decompressor.unconsumed_tail:
        raise StatusError("the status list is larger than allowed")
    return bits


def bit_is_set(bits: bytes, index: int) -> bool:
    """Bit `index`, counting from the most significant bit of the first byte (W3C order)."""
    if index < 0 or index >= len(bits) * 8:
        raise StatusError(f"status index {index} is outside the status list")
    return bool(bits[index // 8] & (0x80 >> (index % 8)))


def bits_with(indices: list[int], *, size: int) -> bytes:
    """A bitstring of `size` bits with the given indices set (used by the issuer)."""
    out = bytearray((size + 7) // 8)
    for index in indices:
        if not 0 <= index < size:
            raise ValueError(f"index {index} outside a list of {size}")
        out[index // 8] |= 0x80 >> (index % 8)
    return bytes(out)


# --- fetching --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchPolicy:
    timeout_seconds: float = 5.0
    max_bytes: int = 256 * 1024
    allow_private_addresses: bool = False
    ca_bundle: str | None = None
    cache_seconds: float = 300.0


def _address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not ip.is_multicast


def url_check(url: str, *, policy: FetchPolicy) -> None:
    """Refuse a status list URL we must not fetch, before any connection is made."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise StatusFetchError(f"status lists are fetched over HTTPS only, not {url!r}")
    if not parts.hostname:
        raise StatusFetchError(f"the status list URL {url!r} has no host")
    if parts.username or parts.password:
        raise StatusFetchError("a status list URL may not carry credentials")
    if policy.allow_private_addresses:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise StatusFetchError(f"the status list host {parts.hostname} does not resolve") from exc
    addresses = {info[4][0] for info in infos}
    if not addresses or not all(_address_is_public(str(a)) for a in addresses):
        raise StatusFetchError(
            f"the status list host {parts.hostname} is a private or loopback address"
        )


def http_fetch(
    url: str,
    *,
    policy: FetchPolicy,
    accept: str = "application/vc+ld+json, application/json",
) -> bytes:
    """GET a status list (or issuer metadata) body under the policy; raises StatusFetchError."""
    url_check(url, policy=policy)
    verify: ssl.SSLContext | bool = True
    if policy.ca_bundle:
        verify = ssl.create_default_context(cafile=policy.ca_bundle)
    try:
        with (
            httpx.Client(
                verify=verify, timeout=policy.timeout_seconds, follow_redirects=False
            ) as client,
            client.stream(
                "GET", url, headers={"Accept": accept}
            ) as response,
        ):
            _peer_check(response, url, policy=policy)
            if response.status_code != 200:
                raise StatusFetchError(
                    f"the status list at {url} answered HTTP {response.status_code}"
                )
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                raise StatusFetchError(
                    f"the status list at {url} is larger than {policy.max_bytes} bytes"
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > policy.max_bytes:
                    raise StatusFetchError(
                        f"the status list at {url} is larger than {policy.max_bytes} bytes"
                    )
            return bytes(body)
    except httpx.TimeoutException as exc:
        raise StatusFetchError(f"the status list at {url} did not answer in time") from exc
    except httpx.HTTPError as exc:
        raise StatusFetchError(
            f"the status list at {url} is unreachable ({exc.__class__.__name__})"
        ) from exc


def _peer_check(response: httpx.Response, url: str, *, policy: FetchPolicy) -> None:
    """The address we actually connected to must be public too (DNS may have changed since
    `url_check` resolved it): checked before any of the body is read."""
    if policy.allow_private_addresses:
        return
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer or not _address_is_public(str(peer[0])):
        raise StatusFetchError(f"the status list host of {url} is a private or loopback address")


class StatusListCache:
    """Verified lists by URL for a short time, so a burst of sign-ins fetches a list once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, url: str) -> Any | None:
        with self._lock:
            entry = self._entries.get(url)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._entries[url]
                return None
            return entry[1]

    def put(self, url: str, value: Any, *, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            if len(self._entries) > 1000:
                self._entries.clear()
            self._entries[url] = (time.monotonic() + seconds, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CACHE = StatusListCache()

Fetcher = Callable[[str], bytes]


# --- IETF Token Status List (SD-JWT VC `status.status_list`) ---------------------------------
#
# Unlike the W3C lists, statuses are packed from the least significant bit of each byte up
# (index 0 is `bytes[0] & 0x01` when bits is 1), `bits` may be 1, 2, 4 or 8, and `lst` is
# base64url of ZLIB (not GZIP) data.

TOKEN_STATUS_BITS = (1, 2, 4, 8)
TOKEN_STATUS_VALID, TOKEN_STATUS_INVALID, TOKEN_STATUS_SUSPENDED = 0, 1, 2


def token_status_decode(lst: Any, bits: Any) -> bytes:
    """The raw bytes of a Token Status List's `lst` (base64url ZLIB), capped in size."""
    if isinstance(bits, bool) or bits not in TOKEN_STATUS_BITS:
        raise StatusError(f"the status list's bits {bits!r} is not 1, 2, 4 or 8")
    if not isinstance(lst, str) or not lst:
        raise StatusError("the status list has no lst")
    try:
        compressed = base64.urlsafe_b64decode(lst + "=" * (-len(lst) % 4))
    except (ValueError, TypeError) as exc:
        raise StatusError("the status list's lst is not base64url") from exc
    decompressor = zlib.decompressobj()
    try:
        data = decompressor.decompress(compressed, MAX_DECOMPRESSED_BYTES + 1)
    except zlib.error as exc:
        raise StatusError("the status list's lst is not ZLIB data") from exc
    if len(data) > MAX_DECOMPRESSED_BYTES or decompressor.unconsumed_tail:
        raise StatusError("the status list is larger than allowed")
    return data


def token_status_value(data: bytes, bits: int, index: int) -> int:
    """The status of `index` (least significant bits first)."""
    per_byte = 8 // bits
    if index < 0 or index >= len(data) * per_byte:
        raise StatusError(f"status index {index} is outside the status list")
    byte = data[index // per_byte]
    return (byte >> ((index % per_byte) * bits)) & ((1 << bits) - 1)


def token_status_encode(statuses: dict[int, int], *, size: int, bits: int = 1) -> str:
    """`lst` for a list of `size` statuses where `statuses` maps index -> value (issuer side)."""
    if bits not in TOKEN_STATUS_BITS:
        raise ValueError("bits must be 1, 2, 4 or 8")
    per_byte = 8 // bits
    out = bytearray((size + per_byte - 1) // per_byte)
    for index, value in statuses.items():
        if not 0 <= index < size or not 0 <= value < (1 << bits):
            raise ValueError(f"status {value} at {index} does not fit")
        out[index // per_byte] |= value << ((index % per_byte) * bits)
    return base64.urlsafe_b64encode(zlib.compress(bytes(out), 9)).decode().rstrip("=")
