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
from typing import Any, BinaryIO

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


# Byte offsets of the layout `entry_line` writes (hash, prev_hash, witness or null, entry).
_H, _P, _W = slice(24, 88), slice(103, 167), slice(180, 244)
_WITH_WITNESS_ENTRY = 254
_NULL_WITNESS_ENTRY = 167 + len(_WITNESS_NULL)
_CHUNK_BYTES = 32 * 1024 * 1024


def _fast_columns(
    lines: list[bytes], first_seq: int
) -> tuple[list[int], list[bytes], list[bytes], list[bytes], list[bytes | None]] | None:
    """Columns of a run of entry lines in the service's layout, by slicing (no JSON parse);
    None when a line is laid out otherwise (the caller then parses line by line).

    Positions stand in for the entries' own seq here: order is authenticated by the chain and
    the signed roots, which a misplaced entry cannot satisfy (--strict also reads each seq)."""
    if lines and not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    if not all(line[88:103] == _AFTER_HASH and line[-2:] == b"}\n" for line in lines):
        return None
    witnessed = [line[167:180] == _WITNESS_OPEN for line in lines]
    if not all(witnessed) and not all(
        w or line[167:_NULL_WITNESS_ENTRY] == _WITNESS_NULL
        for line, w in zip(lines, witnessed, strict=True)
    ):
        return None
    if not all(
        not w or line[244:254] == _ENTRY_OPEN for line, w in zip(lines, witnessed, strict=True)
    ):
        return None
    return (
        list(range(first_seq, first_seq + len(lines))),
        [
            line[_WITH_WITNESS_ENTRY:-2] if w else line[_NULL_WITNESS_ENTRY:-2]
            for line, w in zip(lines, witnessed, strict=True)
        ],
        [line[_P] for line in lines],
        [line[_H] for line in lines],
        [line[_W] if w else None for line, w in zip(lines, witnessed, strict=True)],
    )


def verify_export(
    stream: BinaryIO,
    public_key_pem: bytes,
    *,
    strict: bool = False,
    parallel: bool = False,
    max_unsigned: int | None = None,
) -> chain.Report:
    """Verify an export read from `stream` against the service's public key (`parallel`
    builds the Merkle tree in a second process). More unsigned entries at the end than
    `max_unsigned` (default: the checkpoint interval the header states) is a problem."""
    public_key = chain.load_public_key(public_key_pem)
    checkpoints: list[chain.Checkpoint] = []
    witnesses: list[bytes | None] = []  # hex, decoded only when a checkpoint fails
    header_seen = False
    stated_every: int | None = None
    number = 0

    def other_line(line: bytes) -> None:
        nonlocal header_seen, stated_every
        try:
            data = json.loads(line)
        except ValueError as error:
            raise ExportError(f"line {number}: not JSON ({error})") from error
        kind = data.get("kind") if isinstance(data, dict) else None
        if kind == "header":
            if data.get("format") != FORMAT:
                raise ExportError(f"line {number}: unknown format {data.get('format')!r}")
            header_seen = True
            every = data.get("checkpoint_every")  # absent from exports made before it was
            stated_every = every if isinstance(every, int) and every > 0 else None
        elif kind == "checkpoint":
            try:
                checkpoints.append(chain.checkpoint_from_dict(data))
            except (KeyError, ValueError) as error:
                raise ExportError(f"line {number}: bad checkpoint ({error})") from error
        else:
            raise ExportError(f"line {number}: unknown kind {kind!r}")

    def chunks() -> Iterator[chain.Columns]:
        nonlocal number
        while lines := stream.readlines(_CHUNK_BYTES):
            entry_lines = [line for line in lines if line.startswith(b'{"kind":"entry"')]
            if len(entry_lines) != len(lines):
                for line in lines:
                    if line.strip() and not line.startswith(b'{"kind":"entry"'):
                        other_line(line)
            columns: Any = None if strict else _fast_columns(entry_lines, len(witnesses) + 1)
            if columns is None:
                columns = ([], [], [], [], [])
                for line in entry_lines:
                    try:
                        entry, digest, previous, witness = _split_entry_line(line)
                    except (ValueError, KeyError, TypeError) as error:
                        raise ExportError(f"not an entry line ({error})") from error
                    if strict and chain.encode_entry(json.loads(entry)) != entry:
                        raise ExportError(f"entry {_seq_of(entry)} is not in canonical form")
                    columns[0].append(_seq_of(entry))
                    columns[1].append(entry)
                    columns[2].append(previous)
                    columns[3].append(digest)
                    columns[4].append(witness.hex().encode() if witness is not None else None)
            number += len(lines)
            witnesses.extend(columns[4])
            yield columns[0], columns[1], columns[2], columns[3]

    def witness_leaf(index: int) -> bytes | None:
        found = witnesses[index] if index < len(witnesses) else None
        return bytes.fromhex(found.decode()) if found is not None else None

    # verify_log reads every entry before it looks at the checkpoints, which the same pass
    # collects (they may come before or after the entries).
    report = chain.verify_log(
        chunks(), checkpoints, public_key, witness_leaf=witness_leaf, parallel=parallel
    )
    if not header_seen:
        raise ExportError("no header line: is this an audit export?")
    return report.hold_tail_to(max_unsigned if max_unsigned is not None else stated_every)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audit.verify", description="Verify a Clean room audit export offline."
    )
    parser.add_argument("export", help="the JSON Lines export ('-' for stdin)")
    parser.add_argument("--key", required=True, help="the service's audit public key (PEM)")
    parser.add_argument(
        "--strict", action="store_true", help="also check every entry is canonical JSON"
    )
    parser.add_argument(
        "--max-unsigned",
        type=int,
        default=None,
        help="most entries allowed after the last signed checkpoint (default: the checkpoint "
        "interval the export's header states)",
    )
    args = parser.parse_args(argv)
    try:
        pem = Path(args.key).read_bytes()
        if args.export == "-":
            report = verify_export(
                sys.stdin.buffer,
                pem,
                strict=args.strict,
                parallel=True,
                max_unsigned=args.max_unsigned,
            )
        else:
            with open(args.export, "rb") as stream:
                report = verify_export(
                    stream, pem, strict=args.strict, parallel=True, max_unsigned=args.max_unsigned
                )
    except (OSError, ValueError) as error:
        print(json.dumps({"ok": False, "error": str(error)}))
        return 2
    print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
