from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "pli.messaging"
    label = "messaging"
    verbose_name = "Messaging"
