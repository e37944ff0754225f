"""Offline verifier for an audit export: no database, no Django, only this package's chain.py.

    python -m audit.verify export.jsonl --key audit_public_key.pem

An auditor gets the export (`GET /api/v1/audit/export/` or `manage.py audit_export`) and the
service's public key out of band (`manage.py audit_public_key`), and checks on their own
machine that every entry chains to the next, that the Merkle tree over the entries has the
root each signed checkpoint states, and that each checkpoint is signed by that key. It prints a
JSON report and exits 0 when the log verifies, 1 when it does not, 2 on unusable input.

Export lines (JSON Lines):
  {"kind":"header","format":"cleanroom-audit-export/1",...}
  {"kind":"entry","hash":<hex>,"prev_hash":<hex>,"witness":<hex>|null,"entry":<canonical JSON>}
  {"kind":"checkpoint","tree_size":N,"root":<hex>,"chain_head":<hex>,"timestamp":...,
   "signature":<base64>,"key_id":...}
The entry's bytes are hashed exactly as they appear in the line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from audit import chain

FORMAT = "cleanroom-audit-export/1"
_PREFIX = b'{"kind":"entry","hash":"'
_HEX = 64
_AFTER_HASH = b'","prev_hash":"'
_WITNESS_NULL = b'","witness":null,"entry":'
_WITNESS_OPEN = b'","witness":"'
_ENTRY_OPEN = b'","entry":'


class ExportError(ValueError):
    """The file is not an audit export this verifier understands."""


def _split_entry_line(line: bytes) -> tuple[bytes, str, str, bytes | None]:
    """(entry, hash, prev_hash, witness) from an entry line, without a JSON parse when the
    line has the layout the service writes; any other valid layout falls back to json."""
    body = line.rstrip(b"\r\n")
    p = len(_PREFIX)
    if body.startswith(_PREFIX) and body.endswith(b"}"):
        digest = body[p : p + _HEX]
        q = p + _HEX
        if body[q : q + len(_AFTER_HASH)] == _AFTER_HASH:
            q += len(_AFTER_HASH)
            previous = body[q : q + _HEX]
            q += _HEX
            if body[q : q + len(_WITNESS_NULL)] == _WITNESS_NULL:
                return body[q + len(_WITNESS_NULL) : -1], digest.decode(), previous.decode(), None
            if body[q : q + len(_WITNESS_OPEN)] == _WITNESS_OPEN:
                q += len(_WITNESS_OPEN)
                witness = body[q : q + _HEX]
                q += _HEX
                if body[q : q + len(_ENTRY_OPEN)] == _ENTRY_OPEN:
                    return (
                        body[q + len(_ENTRY_OPEN) : -1],
                        digest.decode(),
                        previous.decode(),
                        bytes.fromhex(witness.decode()),
                    )
    data = json.loads(body)
    witness_hex = data.get("witness")
    return (
        chain.encode_entry(data["entry"]),
        str(data["hash"]),
        str(data["prev_hash"]),
        bytes.fromhex(witness_hex) if witness_hex else None,
    )


def _seq_of(entry: bytes) -> int:
    """The entry's top-level seq. Keys are sorted and only "subject" (a string) follows "seq",
    so the last `,"seq":` is the top-level one (strings cannot hold an unescaped quote)."""
    at = entry.rfind(b',"seq":')
    end = entry.find(b",", at + 7)
    try:
        return int(entry[at + 7 : end]) if at >= 0 and end > 0 else -1
    except ValueError:
        return -1


def entry_line(*, digest: str, previous: str, witness: bytes | None, entry: bytes) -> bytes:
    """One export line for an entry, in the layout `_split_entry_line` reads fastest."""
    return b'{"kind":"entry","hash":"%s","prev_hash":"%s","witness":%s,"entry":%s}\n' % (
        digest.encode(),
        previous.encode(),
        b'"' + witness.hex().encode() + b'"' if witness is not None else b"null",
        entry,
    )


def verify_export(stream: BinaryIO, public_key_pem: bytes, *, strict: bool = False) -> chain.Report:
    """Verify an export read from `stream` against the service's public key."""
    public_key = chain.load_public_key(public_key_pem)
    checkpoints: list[chain.Checkpoint] = []
    witnesses: list[bytes | None] = []
    header_seen = False

    def rows() -> Iterator[tuple[int, bytes, str, str]]:
        nonlocal header_seen
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            if line.startswith(b'{"kind":"entry"'):
                try:
                    entry, digest, previous, witness = _split_entry_line(line)
                except (ValueError, KeyError, TypeError) as error:
                    raise ExportError(f"line {number}: not an entry ({error})") from error
                if strict:
                    canonical = chain.encode_entry(json.loads(entry))
                    if canonical != entry:
                        raise ExportError(f"line {number}: entry is not in canonical form")
                witnesses.append(witness)
                yield _seq_of(entry), entry, previous, digest
                continue
            try:
                data = json.loads(line)
            except ValueError as error:
                raise ExportError(f"line {number}: not JSON ({error})") from error
            kind = data.get("kind") if isinstance(data, dict) else None
            if kind == "header":
                if data.get("format") != FORMAT:
                    raise ExportError(f"line {number}: unknown format {data.get('format')!r}")
                header_seen = True
            elif kind == "checkpoint":
                try:
                    checkpoints.append(chain.checkpoint_from_dict(data))
                except (KeyError, ValueError) as error:
                    raise ExportError(f"line {number}: bad checkpoint ({error})") from error
            elif kind == "entry":
                entry, digest, previous, witness = _split_entry_line(line)
                witnesses.append(witness)
                yield _seq_of(entry), entry, previous, digest
            else:
                raise ExportError(f"line {number}: unknown kind {kind!r}")

    def witness_leaf(index: int) -> bytes | None:
        return witnesses[index] if index < len(witnesses) else None

    # verify_log reads all rows before it looks at the checkpoints, which the same pass collects.
    report = chain.verify_log(
        chain.columns_of(rows()), checkpoints, public_key, witness_leaf=witness_leaf
    )
    if not header_seen:
        raise ExportError("no header line: is this an audit export?")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audit.verify", description="Verify a Clean room audit export offline."
    )
    parser.add_argument("export", help="the JSON Lines export ('-' for stdin)")
    parser.add_argument("--key", required=True, help="the service's audit public key (PEM)")
    parser.add_argument(
        "--strict", action="store_true", help="also check every entry is canonical JSON"
    )
    args = parser.parse_args(argv)
    try:
        pem = Path(args.key).read_bytes()
        if args.export == "-":
            report = verify_export(sys.stdin.buffer, pem, strict=args.strict)
        else:
            with open(args.export, "rb") as stream:
                report = verify_export(stream, pem, strict=args.strict)
    except (OSError, ValueError) as error:
        print(json.dumps({"ok": False, "error": str(error)}))
        return 2
    print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
