"""The patient-share endpoints of REST API v1, included by pli.api.urls (no trailing slashes)."""

from django.urls import path

from pli.sharing import api

urlpatterns = [
    path("shares", api.SharesView.as_view(), name="shares"),
    path("shares/<uuid:share_id>", api.ShareDetailView.as_view(), name="share-detail"),
    path("shares/<uuid:share_id>/revoke", api.ShareRevokeView.as_view(), name="share-revoke"),
    path("shares/<uuid:share_id>/unlock", api.ShareUnlockView.as_view(), name="share-unlock"),
    path("shares/<uuid:share_id>/resend", api.ShareResendView.as_view(), name="share-resend"),
]
