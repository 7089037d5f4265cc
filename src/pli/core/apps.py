from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "pli.core"
    label = "core"
    verbose_name = "Pli core"
