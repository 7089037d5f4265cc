from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "pli.audit"
    label = "audit"
    verbose_name = "Audit trail"
