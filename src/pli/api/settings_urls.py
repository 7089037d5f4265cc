"""Personal API tokens in the user's settings, mounted at ``/settings/tokens/``."""

from django.urls import path

from pli.api import views

app_name = "tokens"

urlpatterns = [
    path("", views.token_list, name="list"),
    path("<int:pk>/revoke/", views.token_revoke, name="revoke"),
]
