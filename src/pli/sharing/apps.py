from django.apps import AppConfig


class SharingConfig(AppConfig):
    name = "pli.sharing"
    label = "sharing"
    verbose_name = "Patient shares"
