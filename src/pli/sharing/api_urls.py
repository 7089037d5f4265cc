"""The patient-share endpoints of REST API v1, included by pli.api.urls (no trailing slashes)."""

from django.urls import path

import pli.api.converters  # noqa: F401 - registers <guid:…>
from pli.sharing import api

urlpatterns = [
    path("shares", api.SharesView.as_view(), name="shares"),
    path("shares/search", api.ShareSearchView.as_view(), name="share-search"),
    path("shares/<guid:share_id>", api.ShareDetailView.as_view(), name="share-detail"),
    path("shares/<guid:share_id>/revoke", api.ShareRevokeView.as_view(), name="share-revoke"),
    path("shares/<guid:share_id>/unlock", api.ShareUnlockView.as_view(), name="share-unlock"),
    path("shares/<guid:share_id>/resend", api.ShareResendView.as_view(), name="share-resend"),
    path("shares/<guid:share_id>/close", api.ShareCloseView.as_view(), name="share-close"),
]
