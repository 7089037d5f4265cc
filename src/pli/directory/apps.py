from django.apps import AppConfig


class DirectoryConfig(AppConfig):
    name = "pli.directory"
    label = "directory"
    verbose_name = "Directory of health professionals"
