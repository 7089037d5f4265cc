from django.contrib.auth.decorators import login_not_required
from django.urls import path
from django.views.i18n import set_language

from pli.core import views as core_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    # The language switch serves the patient pages too, which have no login.
    path("i18n/setlang/", login_not_required(set_language), name="set_language"),
]

handler400 = "pli.core.views.bad_request"
handler403 = "pli.core.views.permission_denied"
handler404 = "pli.core.views.page_not_found"
handler500 = "pli.core.views.server_error"
