from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "pli.core"
    label = "core"
    verbose_name = "Pli core"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from pli.core.logging import forget_request_id

        request_finished.connect(forget_request_id, dispatch_uid="pli.core.forget_request_id")
