"""The named list of views reachable without a professional login.

Everything else is behind django.contrib.auth's LoginRequiredMiddleware. A test walks the
URL configuration and fails if a view is public without being listed here.
"""

PUBLIC_VIEWS: frozenset[str] = frozenset(
    {
        "pli.core.views.healthz",
        "django.views.i18n.set_language",
    }
)
