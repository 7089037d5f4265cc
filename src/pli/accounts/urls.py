"""Sign-in and account pages (django-allauth, mounted view by view) and Pli's own pages.

allauth's views are mounted one by one rather than with ``include("allauth.urls")``: open
sign-up, e-mail address management and login by code are left out on purpose.
"""

from allauth.account import views as allauth_views
from django.urls import include, path, re_path

from pli.accounts import views

app_patterns = [
    path("account/", views.profile, name="profile"),
    path("account/notifications/", views.new_mail_setting, name="new_mail_setting"),
    path("account/session/stay/", views.stay_signed_in, name="stay_signed_in"),
    path("invitation/<str:token>/", views.invitation, name="invitation"),
    path("organisations/", views.organisations, name="organisations"),
    path("organisations/<slug:slug>/members/", views.members, name="members"),
    path("organisations/<slug:slug>/members/invite/", views.invite, name="invite"),
    path("organisations/<slug:slug>/members/<int:membership_id>/", views.member, name="member"),
    path("organisations/<slug:slug>/members/<int:membership_id>/remove/", views.remove_member, name="remove_member"),
    path(
        "organisations/<slug:slug>/invitations/<uuid:invitation_id>/resend/",
        views.resend_invitation,
        name="resend_invitation",
    ),
    path(
        "organisations/<slug:slug>/invitations/<uuid:invitation_id>/revoke/",
        views.revoke_invitation,
        name="revoke_invitation",
    ),
    path("organisations/<slug:slug>/mailboxes/", views.mailboxes, name="mailboxes"),
    path("organisations/<slug:slug>/mailboxes/new/", views.mailbox_create, name="mailbox_create"),
    path("organisations/<slug:slug>/mailboxes/<uuid:mailbox_id>/", views.mailbox_edit, name="mailbox_edit"),
    path("organisations/<slug:slug>/settings/", views.organisation_settings, name="settings"),
    path("organisations/<slug:slug>/audit/", views.audit_journal, name="audit"),
    path("organisations/<slug:slug>/audit/export.csv", views.audit_export, name="audit_export"),
]

urlpatterns = [
    path("login/", allauth_views.login, name="account_login"),
    path("logout/", allauth_views.logout, name="account_logout"),
    path("account/inactive/", allauth_views.account_inactive, name="account_inactive"),
    path("account/reauthenticate/", allauth_views.reauthenticate, name="account_reauthenticate"),
    path("account/password/change/", allauth_views.password_change, name="account_change_password"),
    path("account/password/set/", allauth_views.password_set, name="account_set_password"),
    path("account/password/reset/", allauth_views.password_reset, name="account_reset_password"),
    path("account/password/reset/done/", allauth_views.password_reset_done, name="account_reset_password_done"),
    path(
        "account/password/reset/key/done/",
        allauth_views.password_reset_from_key_done,
        name="account_reset_password_from_key_done",
    ),
    re_path(
        r"^account/password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$",
        allauth_views.password_reset_from_key,
        name="account_reset_password_from_key",
    ),
    # Before allauth's own route for the same page: the last second factor can't be removed.
    path("account/2fa/webauthn/keys/<int:pk>/remove/", views.remove_security_key, name="mfa_remove_webauthn"),
    path("account/2fa/", include("allauth.mfa.urls")),
    path("account/sessions/", views.sessions, name="usersessions_list"),
    path("", include((app_patterns, "accounts"))),
]
