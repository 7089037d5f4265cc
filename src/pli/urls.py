from django.contrib.auth.decorators import login_not_required
from django.urls import include, path, re_path
from django.views.i18n import set_language

from pli.api import api as api_views
from pli.core import views as core_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    # The language switch serves the patient pages too, which have no login.
    path("i18n/setlang/", login_not_required(set_language), name="set_language"),
    # Sign-in, second factor, sessions, invitations, organisation administration.
    path("", include("pli.accounts.urls")),
    # The web mailbox (the REST API's messaging endpoints are registered in pli.api.urls).
    path("messages/", include("pli.messaging.urls")),
    # Patient shares: /shares/ (practitioner), /p/<token> (patient, public), /dev/outbox/ (development).
    path("", include("pli.sharing.urls")),
    # Directory of professionals (page, and search-as-you-type for the compose form).
    path("directory/", include("pli.directory.urls")),
    # Personal API tokens, and the REST API (Bearer tokens; no session).
    path("settings/tokens/", include("pli.api.settings_urls")),
    path("api/v1/", include("pli.api.urls")),
    # Every other /api/ path answers a JSON 404, not the HTML error page.
    re_path(r"^api/", api_views.not_found, name=api_views.NOT_FOUND_NAME),
]

handler400 = "pli.core.views.bad_request"
handler403 = "pli.core.views.permission_denied"
handler404 = "pli.core.views.page_not_found"
handler500 = "pli.core.views.server_error"
# allauth's rate limits answer with this page (it tells the user how long to wait).
handler429 = "pli.accounts.views.too_many_requests"
