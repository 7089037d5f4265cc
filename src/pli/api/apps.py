from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "pli.api"
    label = "api"
    verbose_name = "REST API and personal tokens"

    def ready(self) -> None:
        # Registers the OpenAPI description of the Bearer token scheme with drf-spectacular.
        from pli.api import schema  # noqa: F401
