"""The REST API, version 1, mounted at ``/api/v1/``.

How an app adds its endpoints
-----------------------------
Write DRF views (or viewsets) in ``pli/<app>/api.py`` and add them below, one line each:

* a viewset: ``router.register("messages", MessageViewSet, basename="message")``
  (gives ``/api/v1/messages`` and ``/api/v1/messages/<pk>``; URL names ``api:message-list``…)
* a plain view: ``path("shares/<uuid:pk>/revoke", ShareRevokeView.as_view(), name="share-revoke")``
  in ``urlpatterns``, or a whole module: ``path("", include("pli.messaging.api_urls"))``.

No trailing slashes (``/api/v1/me``). Authentication is by ``Authorization: Bearer <token>``
(``BearerTokenAuthentication``, the default); protect each view with
``permission_classes = [IsAuthenticated, HasScope]`` and ``required_scopes = ["messages:read"]``
(or ``{"GET": ["messages:read"], "POST": ["messages:send"]}``) from ``pli.api.permissions``.
Scopes are listed in ``pli.api.scopes``. Raise DRF exceptions or Django ``ValidationError``
for bad input: ``pli.core.api.exception_handler`` turns them into JSON with field names.

API views take no session: every pattern here is exempted from the login middleware by
``token_authenticated()`` at the bottom, which refuses anything that is not a DRF view.
Their dotted paths must still be listed in ``pli.core.public.PUBLIC_VIEWS`` (a test walks
the URLconf). Each new endpoint is fuzzed by tests/api/test_api_fuzz.py from the schema.
"""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from pli.api.api import MeView
from pli.api.docs import DocsView, SchemaView
from pli.api.routing import token_authenticated

app_name = "api"

router = SimpleRouter(trailing_slash=False)
# router.register(...) lines go here.

urlpatterns = [
    path("me", MeView.as_view(), name="me"),
    path("", include("pli.messaging.api_urls")),
    path("", include("pli.sharing.api_urls")),
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", DocsView.as_view(), name="docs"),
    # Also without the slash, as every other path of the API is written: an integrator who
    # typed /api/v1/schema got a 404.
    path("schema", SchemaView.as_view(), name="schema-no-slash"),
    path("docs", DocsView.as_view(), name="docs-no-slash"),
    *router.urls,
]

token_authenticated(urlpatterns)
