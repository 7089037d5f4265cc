from django.apps import AppConfig


class TestingConfig(AppConfig):
    """Installed only when PLI_TESTING=1 (the test suite): models that exercise shared
    mechanisms without depending on a product feature."""

    name = "pli.testing"
    label = "pli_testing"
