"""The one way every app writes to the audit log, and the signed checkpoints over it.

Invariants:
* An event is appended in the caller's transaction (no change without its event, no event
  without its change): `audit_record` never opens a transaction of its own when one is open.
* Appends are serialized (a PostgreSQL transaction-scoped advisory lock; SQLite's single
  write lock), so ``seq`` is 1, 2, 3... with no gap and each ``prev_hash`` is the previous
  event's ``hash``: the chain never forks. ``seq`` is also unique in the database.
* An event's ``entry`` is the canonical JSON of its fields; ``hash`` = SHA-256(prev || leaf)
  with leaf = SHA-256(0x00 || entry) (see audit/chain.py). Rows are never updated or deleted
  (database triggers).
* A checkpoint signs (tree size, Merkle root, chain head, time) with the service's Ed25519 key,
  and is only taken over entries that verify; one is taken every
  ``CLEANROOM_AUDIT_CHECKPOINT_EVERY`` events (default 1000), by Celery beat, and on demand.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from audit import chain, keys
from audit.models import AuditCheckpoint, AuditEvent, AuditNode
from cleanroom.errors import Conflict

logger = logging.getLogger(__name__)

# One 64-bit advisory lock key for "append to the audit log".
APPEND_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"cleanroom.audit.append").digest()[:8], "big", signed=True
)


def checkpoint_every() -> int:
    return int(getattr(settings, "CLEANROOM_AUDIT_CHECKPOINT_EVERY", 1000))


def _serialize_appends() -> None:
    """Hold the append lock until the end of the current transaction."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APPEND_LOCK_KEY])
        elif connection.vendor == "sqlite":
            # A write that matches no row takes SQLite's write lock now, before the head is
            # read, rather than at the INSERT (no trigger fires: no row is deleted).
            cursor.execute("DELETE FROM audit_auditevent WHERE 0")


def _actor_fields(actor: Any) -> tuple[str, str]:
    if actor is None:
        return "system", ""
    return str(getattr(actor, "role", "") or "admin"), str(actor.pk)


# \u0000 as an escape (an odd run of backslashes before it), not a literal "\\u0000" text.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _normalized(payload: dict[str, Any] | None) -> dict[str, Any]:
    """Payload as plain JSON (Decimals and datetimes become strings); NaN is refused."""
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise TypeError("an audit payload is a dict")
    text = json.dumps(payload, cls=DjangoJSONEncoder, allow_nan=False)
    if _ESCAPED_NUL.search(text):  # PostgreSQL text and jsonb cannot hold NUL
        raise ValueError("an audit payload cannot hold NUL characters")
    value = json.loads(text)
    assert isinstance(value, dict)
    return value


def _head() -> tuple[int, str]:
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    return (head[0], head[1]) if head else (0, chain.GENESIS.hex())


def _checked(action: str, payload: dict[str, Any] | None) -> dict[str, Any]:
    """Refuse a malformed event before any lock is taken or row written."""
    if not action or "." not in action:
        raise ValueError(f"audit action {action!r} is not namespaced (app.entity.verb)")
    return _normalized(payload)


def _build(
    *, seq: int, previous: str, action: str, actor: Any, subject: str, dataset: str, payload: Any
) -> AuditEvent:
    role, actor_id = _actor_fields(actor)
    at = timezone.now()
    clean = payload
    entry = chain.encode_entry(
        chain.make_entry(
            seq=seq,
            at=chain.format_time(at),
            actor_role=role,
            actor_id=actor_id,
            action=action,
            subject=subject,
            dataset=dataset,
            payload=clean,
        )
    )
    digest = chain.chain_hash(bytes.fromhex(previous), chain.leaf_hash(entry))
    return AuditEvent(
        seq=seq,
        at=at,
        actor_role=role,
        actor_id=actor_id,
        action=action,
        subject=subject,
        dataset=dataset,
        payload=clean,
        entry=entry.decode("utf-8"),
        prev_hash=previous,
        hash=digest.hex(),
    )


def audit_record(
    *,
    action: str,
    actor: Any,
    subject: str = "",
    payload: dict[str, Any] | None = None,
    dataset: str = "",
) -> AuditEvent:
    """Append one event in the caller's transaction. `actor` is a User or None (the system).

    `action` is namespaced (`cleanroom.query.released`); `payload` holds no personal data
    and no contributed value.
    """
    clean = _checked(action, payload)
    # savepoint=False: a failed append must fail the caller's whole transaction.
    with transaction.atomic(savepoint=False):
        if connection.vendor == "postgresql":
            event = _append_in_database(
                action=action, actor=actor, subject=subject, dataset=dataset, payload=clean
            )
        else:
            _serialize_appends()
            seq, previous = _head()
            event = _build(
                seq=seq + 1,
                previous=previous,
                action=action,
                actor=actor,
                subject=subject,
                dataset=dataset,
                payload=clean,
            )
            event.save(force_insert=True)
        if event.seq % checkpoint_every() == 0:
            _checkpoint_quietly()
    return event


# Placeholders the database replaces with the time and the sequence number (digits and a
# "Z"-terminated time never collide with a JSON-encoded string from the caller).
_AT_MARK = "\x00at\x00"
_SEQ_MARK = 987654321987654321


def _append_in_database(
    *, action: str, actor: Any, subject: str, dataset: str, payload: dict[str, Any]
) -> AuditEvent:
    """One round trip: lock, head, hash and insert in the `audit_append` function
    (migration 0004), around an entry encoded here by audit/chain.py."""
    role, actor_id = _actor_fields(actor)
    template = chain.encode_entry(
        chain.make_entry(
            seq=_SEQ_MARK,
            at=_AT_MARK,
            actor_role=role,
            actor_id=actor_id,
            action=action,
            subject=subject,
            dataset=dataset,
            payload=payload,
        )
    ).decode("utf-8")
    # Keys are sorted: ..."at":"<time>","dataset":...,"payload":{...},"seq":<n>,"subject":...
    at_mark = '"at":"\\u0000at\\u0000"'
    at_index = template.index(at_mark)
    seq_mark = f',"seq":{_SEQ_MARK},"subject":'
    seq_index = template.rindex(seq_mark)
    before_at = template[:at_index] + '"at":"'
    before_seq = '"' + template[at_index + len(at_mark) : seq_index] + ',"seq":'
    after_seq = template[seq_index + len(f',"seq":{_SEQ_MARK}') :]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, seq, at, entry, prev_hash, hash FROM "
            "audit_append(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
            [
                APPEND_LOCK_KEY,
                before_at,
                before_seq,
                after_seq,
                role,
                actor_id,
                action,
                subject,
                dataset,
                json.dumps(payload),
            ],
        )
        pk, seq, at, entry, previous, digest = cursor.fetchone()
    return AuditEvent(
        pk=pk,
        seq=seq,
        at=at,
        actor_role=role,
        actor_id=actor_id,
        action=action,
        subject=subject,
        dataset=dataset,
        payload=payload,
        entry=entry,
        prev_hash=previous,
        hash=digest,
    )


def _checkpoint_quietly() -> None:
    """The every-N checkpoint: a log that fails verification must not block the caller's
    change, so the refusal is logged (and shows in verification) instead of raised."""
    try:
        with transaction.atomic():
            checkpoint_create()
    except Conflict as error:
        logger.error("audit checkpoint refused: %s", error.detail)
    except (OSError, ValueError) as error:  # e.g. the key file cannot be read or written
        logger.error("audit checkpoint failed: %s", error)


def audit_record_many(*, events: Iterable[dict[str, Any]]) -> list[AuditEvent]:
    """Append several events at once (one lock, one COPY on PostgreSQL); each dict holds
    audit_record's keyword arguments."""
    specs = [(spec, _checked(spec["action"], spec.get("payload"))) for spec in events]
    with transaction.atomic(savepoint=False):
        _serialize_appends()
        seq, previous = _head()
        built: list[AuditEvent] = []
        for spec, clean in specs:
            seq += 1
            event = _build(
                seq=seq,
                previous=previous,
                action=spec["action"],
                actor=spec.get("actor"),
                subject=spec.get("subject", ""),
                dataset=spec.get("dataset", ""),
                payload=clean,
            )
            built.append(event)
            previous = event.hash
        if not built:
            return []
        if connection.vendor == "postgresql":
            _copy_in(built)
        else:
            AuditEvent.objects.bulk_create(built, batch_size=1000)
        every = checkpoint_every()
        if built[-1].seq // every > (built[0].seq - 1) // every:
            _checkpoint_quietly()
    return built


def _copy_in(events: list[AuditEvent]) -> None:
    """COPY the rows in (the batch path's cost is then hashing, not the ORM); the returned
    objects carry no pk."""
    columns = (
        "seq, at, actor_role, actor_id, action, subject, dataset, payload, entry, prev_hash, hash"
    )
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY audit_auditevent ({columns}) FROM STDIN") as copy,
    ):
        for e in events:
            copy.write_row(
                (
                    e.seq,
                    e.at,
                    e.actor_role,
                    e.actor_id,
                    e.action,
                    e.subject,
                    e.dataset,
                    json.dumps(e.payload),
                    e.entry,
                    e.prev_hash,
                    e.hash,
                )
            )


# -- checkpoints -----------------------------------------------------------------------------


_INDEX = '"index"'  # a keyword in SQL


def _store_nodes(fresh: list[tuple[int, int, bytes]]) -> None:
    """Insert new perfect subtree hashes: COPY on PostgreSQL (a checkpoint every N events
    writes about 2N nodes, and the ORM's bulk INSERT was most of the checkpoint's cost)."""
    if connection.vendor == "postgresql":
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY audit_auditnode (level, {_INDEX}, hash) FROM STDIN") as copy,
        ):
            for row in fresh:
                copy.write_row(row)
        return
    AuditNode.objects.bulk_create(
        [AuditNode(level=level, index=index, hash=digest) for level, index, digest in fresh],
        batch_size=2000,
    )


class StoredNodes:
    """Perfect subtree hashes from AuditNode, with a cache and batched look-ups."""

    def __init__(self, known: dict[tuple[int, int], bytes] | None = None) -> None:
        self.cache: dict[tuple[int, int], bytes] = dict(known or {})

    def prefetch(self, keys_: Iterable[tuple[int, int]]) -> None:
        missing = [k for k in set(keys_) if k not in self.cache]
        for start in range(0, len(missing), 400):  # SQLite: <= 999 parameters
            part = missing[start : start + 400]
            # Raw SQL: the ORM's composite-key IN costs more to compile than the query takes.
            pairs = ", ".join(["(%s, %s)"] * len(part))
            with connection.cursor() as cursor:
                # Only "(%s, %s)" placeholders are spliced into the text.
                sql = f'SELECT level, "index", hash FROM audit_auditnode WHERE (level, "index") IN ({pairs})'  # noqa: E501, S608
                cursor.execute(
                    sql,
                    [number for key in part for number in key],
                )
                for level, index, digest in cursor.fetchall():
                    self.cache[(level, index)] = bytes(digest)

    def get(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self.cache:
            self.prefetch([key])
            if key not in self.cache:
                raise LookupError(f"Merkle node {level}/{index} is not stored")
        return self.cache[key]

    def needed(self, compute: Any) -> None:
        """Run `compute(getter)` once with a recording getter to prefetch what it reads."""
        wanted: list[tuple[int, int]] = []

        def record(level: int, index: int) -> bytes:
            wanted.append((level, index))
            return bytes(32)

        compute(record)
        self.prefetch(wanted)


def _json_number(value: int | float) -> Decimal:
    """The number a JSON text states: a float by the shortest text that reads back as it
    (what json.dumps writes), so 1e308 is exactly 10**308, as PostgreSQL's numeric has it."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def same_json(a: Any, b: Any) -> bool:
    """JSON equality as jsonb has it: numbers by the value of their text, booleans apart.

    PostgreSQL's jsonb gives 1e308 back as 1000...0 (309 digits), which Python reads as an
    int; comparing that with the float 1e308 in Python would be false (the float is not
    exactly 10**308), and the checkpointer would refuse that entry forever."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return _json_number(a) == _json_number(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


EVENT_COLUMNS = (
    "seq",
    "entry",
    "prev_hash",
    "hash",
    "at",
    "actor_role",
    "actor_id",
    "action",
    "subject",
    "dataset",
    "payload",
)


def columns_match_entry(row: tuple[Any, ...]) -> bool:
    """The filterable columns of a row (EVENT_COLUMNS order) still say what its entry says."""
    seq, entry, _prev, _hash, at, role, actor_id, action, subject, dataset, payload = row
    try:
        data = json.loads(entry)
    except ValueError:
        return False
    return (
        isinstance(data, dict)
        and data.get("seq") == seq
        and data.get("at") == chain.format_time(at)
        and data.get("actor") == {"role": role, "id": actor_id}
        and data.get("action") == action
        and data.get("subject") == subject
        and data.get("dataset") == dataset
        and same_json(data.get("payload"), payload)
    )


def _signed(*, size: int, root: bytes, head: bytes) -> AuditCheckpoint:
    timestamp = chain.format_time(timezone.now())
    body = chain.checkpoint_body(size=size, root=root, chain_head=head, timestamp=timestamp)
    signature = chain.sign(keys.signing_key(), body)
    return AuditCheckpoint.objects.create(
        tree_size=size,
        root=root.hex(),
        chain_head=head.hex(),
        timestamp=timestamp,
        signature=base64.b64encode(signature).decode(),
        key_id=keys.current_key_id(),
    )


@transaction.atomic
def checkpoint_create() -> AuditCheckpoint | None:
    """Sign a checkpoint over every event appended so far (returns the latest when nothing is
    new, None on an empty log). Refuses with Conflict if the new entries do not verify."""
    _serialize_appends()
    latest = AuditCheckpoint.objects.order_by("-tree_size").first()
    old_size = latest.tree_size if latest else 0
    new_size, head_hex = _head()
    if new_size == old_size:
        return latest
    if new_size < old_size:
        raise Conflict(f"The log has {new_size} entries but checkpoint {old_size} signed more.")
    previous = bytes.fromhex(latest.chain_head) if latest else chain.GENESIS
    leaves: list[bytes] = []
    expected = old_size + 1
    rows = AuditEvent.objects.filter(seq__gt=old_size).order_by("seq").values_list(*EVENT_COLUMNS)
    for row in rows.iterator(chunk_size=2000):
        seq, entry, prev_hash, stored_hash = row[0], row[1].encode("utf-8"), row[2], row[3]
        leaf = chain.leaf_hash(entry)
        current = chain.chain_hash(previous, leaf)
        if (
            seq != expected
            or prev_hash != previous.hex()
            or stored_hash != current.hex()
            or not columns_match_entry(row)
        ):
            raise Conflict(f"Entry {expected} does not verify; no checkpoint is signed over it.")
        leaves.append(leaf)
        previous = current
        expected += 1
    if previous.hex() != head_hex:
        raise Conflict("The log changed while it was being checkpointed.")
    nodes = StoredNodes()
    nodes.prefetch(chain.old_nodes_needed(old_size, new_size))
    fresh = chain.new_perfect_nodes(old_size, leaves, nodes.get)
    _store_nodes(fresh)
    from payouts.crash import crash_point  # test workers only: a kill before the commit

    crash_point("audit.checkpoint.before_commit")  # nodes stored, checkpoint not signed
    nodes.cache.update({(level, index): digest for level, index, digest in fresh})
    nodes.needed(lambda get: chain.tree_root(new_size, get))
    root = chain.tree_root(new_size, nodes.get)
    return _signed(size=new_size, root=root, head=previous)


def checkpoint_as_chain(checkpoint: AuditCheckpoint) -> chain.Checkpoint:
    return chain.Checkpoint(
        size=checkpoint.tree_size,
        root=bytes.fromhex(checkpoint.root),
        chain_head=bytes.fromhex(checkpoint.chain_head),
        timestamp=checkpoint.timestamp,
        signature=base64.b64decode(checkpoint.signature),
        key_id=checkpoint.key_id,
    )
