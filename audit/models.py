"""Audit log models (placeholder until the audit capability lands: plain events)."""

from django.db import models


class AuditEvent(models.Model):
    at = models.DateTimeField(auto_now_add=True)
    actor_role = models.CharField(max_length=20, blank=True)
    actor_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=120, db_index=True)
    subject = models.CharField(max_length=200, blank=True)
    dataset = models.CharField(max_length=100, blank=True, db_index=True)
    payload = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"{self.action} #{self.pk}"
