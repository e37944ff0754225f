"""The audit log: hash-chained events, signed checkpoints and the Merkle tree's stored nodes.

Rows are only ever inserted: the database refuses UPDATE and DELETE on all three tables
(triggers from migration 0003). ``entry`` holds the canonical bytes that were hashed; the
other columns repeat its fields so they can be filtered, and the verifier checks that they
still agree with it.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    seq = models.BigIntegerField(unique=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_role = models.CharField(max_length=20, blank=True)
    actor_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=120, db_index=True)
    subject = models.CharField(max_length=200, blank=True, db_index=True)
    dataset = models.CharField(max_length=100, blank=True, db_index=True)
    payload = models.JSONField(default=dict)
    entry = models.TextField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"{self.action} #{self.seq}"

    @property
    def actor(self) -> str:
        return f"{self.actor_role}:{self.actor_id}" if self.actor_id else self.actor_role


class AuditCheckpoint(models.Model):
    """A signed statement: the first ``tree_size`` entries have this root and chain head."""

    tree_size = models.BigIntegerField(unique=True)
    root = models.CharField(max_length=64)
    chain_head = models.CharField(max_length=64)
    timestamp = models.CharField(max_length=40)
    signature = models.CharField(max_length=100)
    key_id = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["tree_size"]

    def __str__(self) -> str:
        return f"checkpoint {self.tree_size}"


class AuditNode(models.Model):
    """Perfect subtree ``(level, index)`` of the Merkle tree, written when a checkpoint covers it.

    Level 0 holds the leaf hashes as they were when first signed: a witness that names the
    exact entry a re-hashed forgery changed.
    """

    pk = models.CompositePrimaryKey("level", "index")
    level = models.SmallIntegerField()
    index = models.BigIntegerField()
    hash = models.BinaryField(max_length=32)

    def __str__(self) -> str:
        return f"node {self.level}/{self.index}"
