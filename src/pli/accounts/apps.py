from typing import Any

from django.apps import AppConfig


def create_cache_table(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """`pli migrate` also creates the database cache table (rate-limit counters, used
    TOTP codes): an operator has no separate command to remember."""
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)


class AccountsConfig(AppConfig):
    name = "pli.accounts"
    label = "accounts"
    verbose_name = "Accounts and organisations"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from pli.accounts import signals

        signals.connect()
        post_migrate.connect(create_cache_table, sender=self, dispatch_uid="pli.accounts.cache_table")
