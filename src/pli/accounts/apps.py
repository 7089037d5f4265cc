from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "pli.accounts"
    label = "accounts"
    verbose_name = "Accounts and organisations"
