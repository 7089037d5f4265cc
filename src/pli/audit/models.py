"""The audit trail: append-only, each event chained to the previous by SHA-256."""

from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """Who did what to which object, when, from where, and how it ended. Never content."""

    seq = models.BigIntegerField(unique=True)
    at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    outcome = models.CharField(max_length=16)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        db_table = "pli_audit_event"
        indexes = [
            models.Index(fields=["target_type", "target_id"], name="audit_target_idx"),
            # An organisation's access journal filtered by member, newest first.
            models.Index(fields=["actor_type", "actor_id", "seq"], name="audit_actor_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.outcome}"


class AuditHead(models.Model):
    """The single row writers lock to append: it serialises the chain on PostgreSQL and
    remembers the last hash, so removing events at the end of the trail is detected."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    class Meta:
        db_table = "pli_audit_head"

    def __str__(self) -> str:
        return f"audit head at entry {self.seq}"
