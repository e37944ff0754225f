"""The audit log at scale: `python -m bench audit [--events N] [--appends N] [--db-events N]`.

Prints figures, each with its ratio to a bare hashlib loop (one SHA-256 per entry, over the
same entries, in the same run), so a loaded machine shows up in both:

1. verification of 1,000,000 entries (chain + RFC 6962 tree + a signed checkpoint every 1,000)
   in memory (target < 3 s), and by the offline verifier reading a 1,000,000-line export file;
2. an inclusion proof against the 1,000,000-leaf tree: built and verified (target < 1 ms), and
   answered from the database's stored nodes;
3. appends through `audit_record` on the configured database (throwaway copy), one event per
   transaction, many events per transaction, and `audit_record_many` (target >= 2,000/s);
4. verification of the appended events straight from the database.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("cleanroom.query.submitted", {"epsilon": "0.5"}),
    ("cleanroom.query.approved", {}),
    ("cleanroom.budget.charged", {"epsilon": "0.5", "spent_epsilon": "1.5", "total_epsilon": "10"}),
    ("cleanroom.query.released", {"rows": 4}),
    ("payouts.query.charged", {"amount": "1.500000", "currency": "EUR", "entry": 12}),
    ("identity.presentation.refused", {"reason": "untrusted_issuer"}),
]


def _entries(n: int) -> list[bytes]:
    from audit import chain

    out = []
    for i in tqdm(range(n), desc="synthetic entries", unit="entry", unit_scale=True):
        action, payload = ACTIONS[i % len(ACTIONS)]
        out.append(
            chain.encode_entry(
                chain.make_entry(
                    seq=i + 1,
                    at=f"2026-11-29T11:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000000:06d}Z",
                    actor_role="compliance" if i % 3 else "system",
                    actor_id=str(i % 7) if i % 3 else "",
                    action=action,
                    subject=f"query:{i // 6}",
                    dataset="households",
                    payload={**payload, "n": i},
                )
            )
        )
    return out


def _bare(entries: list[bytes]) -> float:
    sha = hashlib.sha256
    start = time.perf_counter()
    for entry in entries:
        sha(entry).digest()
    return time.perf_counter() - start


def _ratio(seconds: float, baseline: float) -> str:
    return f"{seconds / baseline:.2f}x the bare hashlib loop ({baseline:.3f} s)"


def _in_memory(n: int, every: int) -> None:
    from Crypto.PublicKey import ECC

    from audit import chain
    from audit.verify import entry_line, verify_export

    entries = _entries(n)
    key = ECC.generate(curve="ed25519")
    public = key.public_key()
    kid = chain.key_id(public)
    previous = chain.GENESIS
    prevs, hashes, leaves, checkpoints = [], [], [], []
    for entry in tqdm(entries, desc="chaining the log", unit="entry", unit_scale=True):
        leaf = chain.leaf_hash(entry)
        current = chain.chain_hash(previous, leaf)
        prevs.append(previous.hex())
        hashes.append(current.hex())
        leaves.append(leaf)
        previous = current
    tree = chain.MerkleTree(leaves)
    for size in range(every, n + 1, every):
        body = chain.checkpoint_body(
            size=size,
            root=tree.root(size),
            chain_head=bytes.fromhex(hashes[size - 1]),
            timestamp="t",
        )
        checkpoints.append(
            chain.Checkpoint(
                size,
                tree.root(size),
                bytes.fromhex(hashes[size - 1]),
                "t",
                chain.sign(key, body),
                kid,
            )
        )
    seqs = list(range(1, n + 1))
    chunk = 65536
    columns = [
        (seqs[i : i + chunk], entries[i : i + chunk], prevs[i : i + chunk], hashes[i : i + chunk])
        for i in range(0, n, chunk)
    ]

    baseline = _bare(entries)
    runs, parallel_runs = [], []
    for _ in range(3):
        start = time.perf_counter()
        report = chain.verify_log(columns, checkpoints, public)
        runs.append(time.perf_counter() - start)
        assert report.ok and report.entries == n and report.checkpoints_checked == len(checkpoints)
        start = time.perf_counter()
        report = chain.verify_log(columns, checkpoints, public, parallel=True)
        parallel_runs.append(time.perf_counter() - start)
        assert report.ok and report.entries == n and report.checkpoints_checked == len(checkpoints)
    best = min(runs)
    best_parallel = min(parallel_runs)
    start = time.perf_counter()
    assert all(chain.signature_is_valid(public, cp.body, cp.signature) for cp in checkpoints)
    signatures = time.perf_counter() - start
    print(
        f"\n[verify] {n:,} entries + {len(checkpoints):,} signed checkpoints in memory: "
        f"best {best:.3f} s of 3 ({n / best:,.0f} entries/s), median {statistics.median(runs):.3f} s; "
        f"{_ratio(best, baseline)}; target < 3 s: {'met' if best < 3 else 'MISSED'}\n"
        f"         of which the {len(checkpoints):,} Ed25519 signature checks take {signatures:.3f} s "
        f"(pycryptodome, {signatures / max(len(checkpoints), 1) * 1e3:.2f} ms each)"
    )
    print(
        f"[verify] the same with the tree built in a second process (what `python -m audit.verify` "
        f"and `manage.py audit_verify` do): best {best_parallel:.3f} s of 3, median "
        f"{statistics.median(parallel_runs):.3f} s; {_ratio(best_parallel, baseline)}; "
        f"target < 3 s: {'met' if best_parallel < 3 else 'MISSED'}"
    )

    # The offline verifier over an export file of the same entries.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.jsonl"
        with path.open("wb") as handle:
            handle.write(b'{"kind":"header","format":"cleanroom-audit-export/1"}\n')
            for i in tqdm(range(n), desc="writing the export", unit="line", unit_scale=True):
                handle.write(
                    entry_line(
                        digest=hashes[i], previous=prevs[i], witness=leaves[i], entry=entries[i]
                    )
                )
            for cp in checkpoints:
                handle.write(
                    json.dumps({"kind": "checkpoint", **chain.checkpoint_to_dict(cp)}).encode()
                    + b"\n"
                )
        pem = public.export_key(format="PEM").encode()
        start = time.perf_counter()
        with path.open("rb") as stream:
            report = verify_export(stream, pem, parallel=True)
        seconds = time.perf_counter() - start
        assert report.ok and report.entries == n
        size_mb = path.stat().st_size / 1e6
    print(
        f"[verify] offline verifier (python -m audit.verify) on a {size_mb:,.0f} MB, {n:,}-line export: "
        f"{seconds:.3f} s ({n / seconds:,.0f} entries/s); {_ratio(seconds, baseline)}"
    )

    # Inclusion proofs against the full tree.
    rng = random.Random(7)
    picks = [rng.randrange(n) for _ in range(20000)]
    root = tree.root()
    start = time.perf_counter()
    proofs = [tree.inclusion_proof(i) for i in picks]
    build = (time.perf_counter() - start) / len(picks)
    start = time.perf_counter()
    for i, proof in zip(picks, proofs, strict=True):
        assert chain.verify_inclusion(leaves[i], i, n, proof, root)
    check = (time.perf_counter() - start) / len(picks)
    per_entry = baseline / n
    print(
        f"[proof] inclusion proof in a {n:,}-leaf tree ({len(proofs[0])} hashes): built in "
        f"{build * 1e6:.1f} us, verified in {check * 1e6:.1f} us = {(build + check) * 1e3:.4f} ms "
        f"(target < 1 ms: {'met' if build + check < 1e-3 else 'MISSED'}); "
        f"{(build + check) / per_entry:.0f}x one bare SHA-256 of an entry ({per_entry * 1e6:.2f} us)"
    )


def _plain_inserts(entries: list[bytes]) -> tuple[float, float]:
    """The database's own floor: the same entries INSERTed into a plain table, one per
    transaction (each commit waits for the WAL flush) and 100 per transaction."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_plain_event (id bigserial PRIMARY KEY, entry text)")
    start = time.perf_counter()
    for entry in entries:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("INSERT INTO bench_plain_event (entry) VALUES (%s)", [entry.decode()])
    single = time.perf_counter() - start
    start = time.perf_counter()
    for first in range(0, len(entries), 100):
        with transaction.atomic(), connection.cursor() as cursor:
            for entry in entries[first : first + 100]:
                cursor.execute(
                    "INSERT INTO bench_plain_event (entry) VALUES (%s)", [entry.decode()]
                )
    grouped = time.perf_counter() - start
    return single, grouped


def _database(appends: int, db_events: int) -> None:
    from django.db import transaction

    from audit import chain
    from audit.models import AuditEvent
    from audit.selectors import inclusion_proof_get, log_verify
    from audit.services import audit_record, audit_record_many, checkpoint_create

    def spec(i: int) -> dict[str, Any]:
        action, payload = ACTIONS[i % len(ACTIONS)]
        return {
            "action": action,
            "actor": None,
            "subject": f"query:{i // 6}",
            "dataset": "households",
            "payload": {**payload, "n": i},
        }

    # Baseline over the entries the appends write (taken from the database afterwards).
    start = time.perf_counter()
    for i in tqdm(range(appends), desc="appends, one per transaction", unit="event"):
        with transaction.atomic():
            audit_record(**spec(i))
    single = time.perf_counter() - start

    start = time.perf_counter()
    batch = 100
    for first in tqdm(range(0, appends, batch), desc="appends, 100 per transaction", unit="batch"):
        with transaction.atomic():
            for i in range(first, min(first + batch, appends)):
                audit_record(**spec(i))
    grouped = time.perf_counter() - start

    start = time.perf_counter()
    for first in tqdm(range(0, appends, 500), desc="audit_record_many, 500 per call", unit="batch"):
        audit_record_many(events=[spec(i) for i in range(first, min(first + 500, appends))])
    many = time.perf_counter() - start

    entries = [
        e.encode()
        for e in AuditEvent.objects.order_by("seq").values_list("entry", flat=True)[:appends]
    ]
    baseline = _bare(entries)
    plain_single, plain_grouped = _plain_inserts(entries)
    for label, seconds, plain in (
        ("one event per transaction", single, plain_single),
        ("100 events per transaction", grouped, plain_grouped),
        ("audit_record_many, 500 per call", many, plain_grouped),
    ):
        rate = appends / seconds
        print(
            f"[append] {label}: {appends:,} in {seconds:.2f} s = {rate:,.0f} events/s "
            f"(target >= 2,000/s: {'met' if rate >= 2000 else 'MISSED'}); {_ratio(seconds, baseline)}; "
            f"{seconds / plain:.2f}x a plain INSERT of the same entries, same grouping "
            f"({appends / plain:,.0f}/s: no chain, no lock)"
        )

    # Grow the log for database verification and proofs from stored nodes.
    have = AuditEvent.objects.count()
    for first in tqdm(range(have, db_events, 1000), desc="growing the log", unit="batch"):
        audit_record_many(events=[spec(i) for i in range(first, min(first + 1000, db_events))])
    checkpoint = checkpoint_create()
    assert checkpoint is not None
    total = AuditEvent.objects.count()
    entries = [
        e.encode() for e in AuditEvent.objects.order_by("seq").values_list("entry", flat=True)
    ]
    baseline = _bare(entries)
    start = time.perf_counter()
    report = log_verify()
    seconds = time.perf_counter() - start
    assert report.ok, report.problems
    print(
        f"[verify] from the database (chain + tree in Python, columns against entries in SQL): "
        f"{total:,} entries, {report.checkpoints_checked} checkpoints in {seconds:.2f} s "
        f"({total / seconds:,.0f} entries/s); {_ratio(seconds, baseline)}"
    )
    rng = random.Random(3)
    times = []
    root = bytes.fromhex(checkpoint.root)
    for _ in range(300):
        seq = rng.randrange(1, total + 1)
        start = time.perf_counter()
        proof = inclusion_proof_get(seq=seq)
        times.append(time.perf_counter() - start)
        leaf = bytes.fromhex(proof["leaf_hash"])
        assert chain.verify_inclusion(
            leaf, seq - 1, total, [bytes.fromhex(p) for p in proof["proof"]], root
        )
    print(
        f"[proof] inclusion proof answered from stored nodes ({total:,} leaves, two queries): "
        f"median {statistics.median(times) * 1e3:.2f} ms, p95 {sorted(times)[int(len(times) * 0.95)] * 1e3:.2f} ms"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench audit")
    parser.add_argument("--events", type=int, default=1_000_000, help="entries verified in memory")
    parser.add_argument("--every", type=int, default=1000, help="checkpoint interval")
    parser.add_argument("--appends", type=int, default=3000, help="events per append mode")
    parser.add_argument("--db-events", type=int, default=100_000, help="log size for DB verify")
    parser.add_argument("--skip-db", action="store_true")
    parser.add_argument("--skip-memory", action="store_true", help="only the database figures")
    args = parser.parse_args(argv)

    import django

    django.setup()
    import os

    from django.conf import settings
    from django.db import connection

    print(f"load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if not args.skip_memory:
        _in_memory(args.events, args.every)
    if args.skip_db:
        return
    folder = tempfile.mkdtemp()
    settings.CLEANROOM_AUDIT_KEY_FILE = str(Path(folder) / "bench_audit_key.pem")
    settings.CLEANROOM_AUDIT_CHECKPOINT_EVERY = args.every
    test_settings = connection.settings_dict.setdefault("TEST", {})
    if connection.vendor == "sqlite":
        test_settings["NAME"] = str(settings.VAR_DIR / "bench-audit.sqlite3")
    else:
        test_settings["NAME"] = "cleanroom_bench_audit"
    print(f"\ncreating a throwaway {connection.vendor} database for the bench...")
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        _database(args.appends, args.db_events)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
