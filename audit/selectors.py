"""Reads of the audit log: filtered events, verification, proofs, export, compliance views."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit import chain, keys
from audit.models import AuditCheckpoint, AuditEvent, AuditNode
from audit.services import (
    EVENT_COLUMNS,
    StoredNodes,
    checkpoint_as_chain,
    checkpoint_every,
    columns_match_entry,
)
from audit.verify import entry_line
from cleanroom.accounts.models import Organization
from cleanroom.errors import Conflict, NotFound, ValidationFailed

EXPORT_FORMAT = "cleanroom-audit-export/1"
ROLES = ("business", "compliance", "contributor", "system", "admin")


# -- filtering -------------------------------------------------------------------------------


def _moment(name: str, value: str, *, end: bool) -> datetime:
    try:
        # A bare date first: parse_datetime would read it as midnight.
        day = parse_date(value) if len(value) == 10 else None
        parsed = None if day else parse_datetime(value)
    except ValueError:  # well formed but impossible, e.g. month 13
        parsed = day = None
    if parsed is not None:
        return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)
    if day is None:
        raise ValidationFailed(
            f"{name} must be a date (2026-11-29) or an ISO date-time, not {value!r}.",
            errors=[{"field": name, "message": "not a date or date-time"}],
        )
    # A bare date includes that whole day on both ends.
    moment = datetime.combine(day + timedelta(days=1) if end else day, time.min)
    return timezone.make_aware(moment, UTC)


@dataclass
class EventFilter:
    action: str = ""
    actor: str = ""
    dataset: str = ""
    subject: str = ""
    since: datetime | None = None
    until: datetime | None = None
    # Only refusals: *.refused (wrong passwords, queries, uploads, access), *.locked and
    # cleanroom.refusals.suppressed (see cleanroom/refusals.py).
    refused: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EventFilter:
        def text(name: str) -> str:
            return str(params.get(name) or "").strip()

        found = cls(
            action=text("action"),
            actor=text("actor"),
            dataset=text("dataset"),
            subject=text("subject"),
            refused=text("refused").lower() in ("1", "true", "yes", "on"),
        )
        if text("since"):
            found.since = _moment("since", text("since"), end=False)
        if text("until"):
            found.until = _moment("until", text("until"), end=True)
        if found.since and found.until and found.since >= found.until:
            raise ValidationFailed("since must be before until.")
        if found.actor:
            role, _, pk = found.actor.partition(":")
            if not (found.actor.isdigit() or (role in ROLES and (not pk or pk.isdigit()))):
                raise ValidationFailed(
                    "actor is 'system', a role (business, compliance, contributor), "
                    f"role:id (compliance:3) or a user id, not {found.actor!r}.",
                    errors=[{"field": "actor", "message": "unknown actor"}],
                )
        return found

    def as_params(self) -> dict[str, str]:
        out = {
            "action": self.action,
            "actor": self.actor,
            "dataset": self.dataset,
            "subject": self.subject,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "refused": "1" if self.refused else "",
        }
        return {k: v for k, v in out.items() if v}


def event_list(
    *, filters: EventFilter | None = None, newest_first: bool = False
) -> QuerySet[AuditEvent]:
    """Events in seq order (the portal: newest first). `action` ending in '.' or '*'
    matches a namespace."""
    events = AuditEvent.objects.order_by("-seq" if newest_first else "seq")
    if filters is None:
        return events
    if filters.action:
        if filters.action.endswith(("*", ".")):
            events = events.filter(action__startswith=filters.action.rstrip("*"))
        else:
            events = events.filter(action=filters.action)
    if filters.actor:
        if filters.actor.isdigit():
            events = events.filter(actor_id=filters.actor).exclude(actor_role="system")
        else:
            role, _, pk = filters.actor.partition(":")
            events = events.filter(actor_role=role)
            if pk:
                events = events.filter(actor_id=pk)
    if filters.dataset:
        events = events.filter(dataset=filters.dataset)
    if filters.subject:
        events = events.filter(subject=filters.subject)
    if filters.since:
        events = events.filter(at__gte=filters.since)
    if filters.until:
        events = events.filter(at__lt=filters.until)
    if filters.refused:
        events = events.filter(
            Q(action__endswith=".refused")
            | Q(action__endswith=".locked")
            | Q(action="cleanroom.refusals.suppressed")
        )
    return events


def event_get(*, seq: int) -> AuditEvent:
    event = AuditEvent.objects.filter(seq=seq).first()
    if event is None:
        raise NotFound(f"There is no audit entry {seq}.")
    return event


# -- verification ----------------------------------------------------------------------------


class _StoredLeaves:
    """Leaf hashes recorded when each leaf was first checkpointed, loaded on first use."""

    def __init__(self) -> None:
        self.leaves: dict[int, bytes] | None = None

    def __call__(self, index: int) -> bytes | None:
        if self.leaves is None:
            self.leaves = {
                i: bytes(h)
                for i, h in AuditNode.objects.filter(level=0).values_list("index", "hash")
            }
        return self.leaves.get(index)


# PostgreSQL compares every row's filterable columns with its hashed entry in one pass (jsonb
# equality treats 1e20 and 100000000000000000000 as the same number, as same_json does).
_COLUMNS_AGREE_SQL = """
SELECT min(seq) FROM (SELECT seq, at, actor_role, actor_id, action, subject, dataset, payload,
                             entry::jsonb AS d FROM audit_auditevent) AS e
WHERE (d->>'seq') IS DISTINCT FROM seq::text
   OR (d->>'at') IS DISTINCT FROM to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
   OR (d->'actor') IS DISTINCT FROM jsonb_build_object('role', actor_role, 'id', actor_id)
   OR (d->>'action') IS DISTINCT FROM action
   OR (d->>'subject') IS DISTINCT FROM subject
   OR (d->>'dataset') IS DISTINCT FROM dataset
   OR (d->'payload') IS DISTINCT FROM payload
"""


def _first_row_whose_columns_disagree() -> int | None:
    """The first seq whose columns (what pages and filters show) differ from its entry."""
    if connection.vendor == "postgresql":
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(_COLUMNS_AGREE_SQL)
                found = cursor.fetchone()[0]
                return int(found) if found is not None else None
        except DatabaseError:
            pass  # an entry that is not JSON at all: find it row by row below
    query = AuditEvent.objects.order_by("seq").values_list(*EVENT_COLUMNS)
    for row in query.iterator(chunk_size=5000):
        if not columns_match_entry(row):
            return int(row[0])
    return None


def log_verify(*, parallel: bool = False) -> chain.Report:
    """Recompute the chain and the tree from the database and check every checkpoint
    (`parallel`: build the tree in a forked process; for commands, not the threaded server)."""

    def rows() -> Iterator[tuple[int, bytes, str, str]]:
        query = AuditEvent.objects.order_by("seq").values_list("seq", "entry", "prev_hash", "hash")
        for seq, entry, previous, digest in query.iterator(chunk_size=10000):
            yield seq, entry.encode("utf-8"), previous, digest

    checkpoints = [checkpoint_as_chain(c) for c in AuditCheckpoint.objects.order_by("tree_size")]
    report = chain.verify_log(
        chain.columns_of(rows()),
        checkpoints,
        keys.public_key(),
        witness_leaf=_StoredLeaves(),
        parallel=parallel,
    )
    disagree = _first_row_whose_columns_disagree()
    if disagree is not None and (
        report.first_bad_entry is None or disagree < report.first_bad_entry
    ):
        why = f"entry {disagree}: its columns no longer say what its hashed entry says"
        report.ok = False
        report.first_bad_entry = disagree
        report.reason = why
        report.problems.insert(0, why)
    return report.hold_tail_to(checkpoint_every())


def checkpoint_latest() -> AuditCheckpoint | None:
    return AuditCheckpoint.objects.order_by("-tree_size").first()


def checkpoint_get(*, tree_size: int | None) -> AuditCheckpoint:
    if tree_size is None:
        latest = checkpoint_latest()
        if latest is None:
            raise Conflict("No checkpoint has been signed yet.")
        return latest
    found = AuditCheckpoint.objects.filter(tree_size=tree_size).first()
    if found is None:
        raise NotFound(f"There is no signed checkpoint of size {tree_size}.")
    return found


def checkpoint_data(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    return {
        "tree_size": checkpoint.tree_size,
        "root": checkpoint.root,
        "chain_head": checkpoint.chain_head,
        "timestamp": checkpoint.timestamp,
        "signature": checkpoint.signature,
        "key_id": checkpoint.key_id,
        "signed_note": checkpoint_as_chain(checkpoint).body.decode(),
    }


# -- proofs ----------------------------------------------------------------------------------


_PROOF_CHECKPOINT_FIELDS = (
    "id",
    "tree_size",
    "root",
    "chain_head",
    "timestamp",
    "signature",
    "key_id",
)


def inclusion_proof_get(*, seq: int, tree_size: int | None = None) -> dict[str, Any]:
    """Proof that entry `seq` is leaf seq-1 of a signed checkpoint's tree.

    Two raw queries (the checkpoint with the entry, then every stored node the proof needs):
    the ORM's query compilation cost more than the queries themselves."""
    sql = (  # the columns of _PROOF_CHECKPOINT_FIELDS, then the entry
        'SELECT c."id", c."tree_size", c."root", c."chain_head", c."timestamp", '
        'c."signature", c."key_id", e.entry FROM audit_auditcheckpoint c '
        "LEFT JOIN audit_auditevent e ON e.seq = %s"
    )
    params: list[Any] = [seq]
    if tree_size is not None:
        sql += " WHERE c.tree_size = %s"
        params.append(tree_size)
    with connection.cursor() as cursor:
        cursor.execute(sql + " ORDER BY c.tree_size DESC LIMIT 1", params)
        row = cursor.fetchone()
    if row is None:
        if tree_size is None:
            raise Conflict("No checkpoint has been signed yet.")
        raise NotFound(f"There is no signed checkpoint of size {tree_size}.")
    checkpoint = AuditCheckpoint.from_db(None, list(_PROOF_CHECKPOINT_FIELDS), list(row[:-1]))
    entry = row[-1]
    if entry is None:
        raise NotFound(f"There is no audit entry {seq}.")
    if seq > checkpoint.tree_size:
        raise Conflict(
            f"Entry {seq} is newer than checkpoint {checkpoint.tree_size}; "
            "prove it against a later checkpoint."
        )
    nodes = StoredNodes()
    size = checkpoint.tree_size
    nodes.needed(lambda get: chain.inclusion_proof(seq - 1, size, get))
    proof = chain.inclusion_proof(seq - 1, size, nodes.get)
    return {
        "seq": seq,
        "leaf_index": seq - 1,
        "tree_size": size,
        "leaf_hash": chain.leaf_hash(entry.encode("utf-8")).hex(),
        "entry": entry,
        "proof": [p.hex() for p in proof],
        "root": checkpoint.root,
        "checkpoint": checkpoint_data(checkpoint),
    }


def consistency_proof_get(*, first: int, second: int | None = None) -> dict[str, Any]:
    """Proof that checkpoint `first`'s tree is a prefix of checkpoint `second`'s."""
    old = checkpoint_get(tree_size=first)
    new = checkpoint_get(tree_size=second)
    if old.tree_size > new.tree_size:
        raise ValidationFailed("first must not be larger than second.")
    nodes = StoredNodes()
    nodes.needed(lambda get: chain.consistency_proof(old.tree_size, new.tree_size, get))
    proof = chain.consistency_proof(old.tree_size, new.tree_size, nodes.get)
    return {
        "first": old.tree_size,
        "second": new.tree_size,
        "first_root": old.root,
        "second_root": new.root,
        "proof": [p.hex() for p in proof],
        "first_checkpoint": checkpoint_data(old),
        "second_checkpoint": checkpoint_data(new),
    }


# -- export ----------------------------------------------------------------------------------


def _json_line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def export_lines() -> Iterator[bytes]:
    """The whole log as JSON Lines for `python -m audit.verify`: a header, every entry in
    order (its canonical bytes verbatim, with the leaf hash witnessed at checkpoint time),
    then the signed checkpoints."""
    # Checkpoints first, then the head: every checkpoint listed was signed over entries that
    # are at or below that head, so the export never shows a checkpoint for entries it lacks
    # (unless entries were removed, which is what the verifier must then report).
    checkpoints = list(AuditCheckpoint.objects.order_by("tree_size"))
    head = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    yield _json_line(
        {
            "kind": "header",
            "format": EXPORT_FORMAT,
            "origin": chain.ORIGIN,
            "entries": head,
            "checkpoints": len(checkpoints),
            "checkpoint_every": checkpoint_every(),
            "key_id": keys.current_key_id(),
            "exported_at": chain.format_time(timezone.now()),
        }
    )
    step = 5000
    for start in range(1, head + 1, step):
        end = min(start + step, head + 1)
        witnesses = dict(
            AuditNode.objects.filter(level=0, index__gte=start - 1, index__lt=end - 1).values_list(
                "index", "hash"
            )
        )
        rows = (
            AuditEvent.objects.filter(seq__gte=start, seq__lt=end)
            .order_by("seq")
            .values_list("seq", "hash", "prev_hash", "entry")
        )
        out = []
        for seq, digest, previous, entry in rows:
            witness = witnesses.get(seq - 1)
            out.append(
                entry_line(
                    digest=digest,
                    previous=previous,
                    witness=bytes(witness) if witness is not None else None,
                    entry=entry.encode("utf-8"),
                )
            )
        yield b"".join(out)
    for checkpoint in checkpoints:
        yield _json_line(
            {"kind": "checkpoint", **chain.checkpoint_to_dict(checkpoint_as_chain(checkpoint))}
        )


def event_row(event: AuditEvent) -> dict[str, Any]:
    """An event as the API, the CSV and the filtered JSONL show it."""
    return {
        "seq": event.seq,
        "at": chain.format_time(event.at),
        "actor": event.actor,
        "actor_role": event.actor_role,
        "actor_id": event.actor_id,
        "action": event.action,
        "subject": event.subject,
        "dataset": event.dataset,
        "payload": event.payload,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


# -- compliance views ------------------------------------------------------------------------


def action_names() -> list[str]:
    """Every action name the log holds, sorted (the events page's filter choices)."""
    return list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct())


def organization_name(*, pk: int) -> str | None:
    """An organization's name by pk (the log keeps only the pk; a name is not personal data)."""
    return Organization.objects.filter(pk=pk).values_list("name", flat=True).first()


def query_story(*, query_id: int) -> list[AuditEvent]:
    """Everything about one query: events about `query:<id>` and events whose payload names it
    (charges, distributions, settlements that include it)."""
    linked = (
        Q(subject=f"query:{query_id}")
        | Q(payload__query=query_id)
        | Q(payload__query=str(query_id))
        | Q(payload__query_id=query_id)
        | Q(payload__query_id=str(query_id))
    )
    if connection.vendor == "postgresql":  # JSON containment is not available on SQLite
        linked |= Q(payload__queries__contains=[query_id])
    return list(AuditEvent.objects.filter(linked).order_by("seq"))


BUDGET_ACTIONS = ("cleanroom.budget.charged", "cleanroom.budget.refunded")


@dataclass
class BudgetPoint:
    at: datetime
    seq: int
    epsilon: float
    spent: float
    total: float
    subject: str


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def budget_series(*, filters: EventFilter | None = None) -> dict[str, list[BudgetPoint]]:
    """Privacy budget use per dataset over time, from `cleanroom.budget.charged` events (and
    `cleanroom.budget.refunded`, which give budget back), each carrying the dataset's
    spent and total epsilon after the change."""
    events = event_list(filters=filters).filter(action__in=BUDGET_ACTIONS)
    series: dict[str, list[BudgetPoint]] = {}
    for event in events:
        payload = event.payload if isinstance(event.payload, dict) else {}
        spent = _number(payload.get("spent_epsilon"))
        total = _number(payload.get("total_epsilon"))
        if spent is None or total is None:
            continue
        series.setdefault(event.dataset or "(none)", []).append(
            BudgetPoint(
                at=event.at,
                seq=event.seq,
                epsilon=(_number(payload.get("epsilon")) or 0.0)
                * (-1 if event.action.endswith("refunded") else 1),
                spent=spent,
                total=total,
                subject=event.subject,
            )
        )
    return series


def presentation_checks(*, filters: EventFilter | None = None) -> QuerySet[AuditEvent]:
    return (
        event_list(filters=filters)
        .filter(action__startswith="identity.presentation.")
        .order_by("-seq")
    )


def refusal_reasons(*, filters: EventFilter | None = None) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for payload in (
        presentation_checks(filters=filters)
        .filter(action="identity.presentation.refused")
        .values_list("payload", flat=True)
    ):
        reason = str((payload or {}).get("reason") or "(no reason given)")
        counts[reason] = counts.get(reason, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def actor_ids(*, events: list[AuditEvent]) -> dict[int, str]:
    """Each event's actor in the subjects' id scheme: a contributor as ``contributor:<pk>``
    (the id subjects and payouts use, not their user account's), anyone else as
    ``user:<pk>`` with their role; ``system`` for none. Keyed by the event's seq."""
    from cleanroom.accounts.models import Contributor

    users = {
        int(e.actor_id)
        for e in events
        if e.actor_role == "contributor" and e.actor_id.isascii() and e.actor_id.isdigit()
    }
    contributors = dict(Contributor.objects.filter(user_id__in=users).values_list("user_id", "pk"))
    out: dict[int, str] = {}
    for event in events:
        if event.actor_role == "system" or not event.actor_id:
            out[event.seq] = "system"
        elif (
            event.actor_role == "contributor"
            and event.actor_id.isdigit()
            and (int(event.actor_id) in contributors)
        ):
            out[event.seq] = f"contributor:{contributors[int(event.actor_id)]}"
        else:
            out[event.seq] = f"user:{event.actor_id} ({event.actor_role})"
    return out
