"""Mounted at the root: the practitioner's /shares/ pages, the patient's /p/<token> pages
(public), the SMS provider's delivery reports (/hooks/, public, signed) and, in
development, /dev/outbox/."""

from django.urls import path

from pli.sharing import hooks, outbox, patient, views

app_name = "sharing"

urlpatterns = [
    path("shares/", views.share_list, name="list"),
    path("shares/new", views.new_share, name="new"),
    path("shares/<uuid:share_id>", views.share_detail, name="detail"),
    path("shares/<uuid:share_id>/revoke", views.revoke, name="revoke"),
    path("shares/<uuid:share_id>/unlock", views.unlock, name="unlock"),
    path("shares/<uuid:share_id>/resend", views.resend, name="resend"),
    path("shares/<uuid:share_id>/close", views.close, name="close"),
    # The patient's pages: the token is a path segment, masked in every log (pli.core.logging).
    path("p/<str:token>", patient.landing, name="patient_landing"),
    path("p/<str:token>/", patient.landing_with_slash, name="patient_landing_with_slash"),
    path("p/<str:token>/code", patient.code, name="patient_code"),
    path("p/<str:token>/code/new", patient.new_code, name="patient_new_code"),
    path("p/<str:token>/documents", patient.documents, name="patient_documents"),
    path("p/<str:token>/documents/<uuid:document_id>/view", patient.view_document, name="patient_view"),
    path("p/<str:token>/documents/<uuid:document_id>/download", patient.download_document, name="patient_download"),
    path("p/<str:token>/reply", patient.reply, name="patient_reply"),
    path("p/<str:token>/alive", patient.keep_alive, name="patient_alive"),
    path("p/<str:token>/leave", patient.leave, name="patient_leave"),
    path("dev/outbox/", outbox.outbox, name="outbox"),
    # Delivery reports from the SMS provider (public; signed: pli.sharing.hooks).
    path("hooks/sms/twilio", hooks.twilio_status, name="twilio_status"),
]
