"""The named list of views reachable without a professional login.

Everything else is behind django.contrib.auth's LoginRequiredMiddleware. A test walks the
URL configuration and fails if a view is public without being listed here.
"""

PUBLIC_VIEWS: frozenset[str] = frozenset(
    {
        "pli.core.views.healthz",
        "django.views.i18n.set_language",
        # Signing in (allauth): password, second factor, password reset, sign-out, and the
        # invitation link that creates an account (pli.accounts).
        "allauth.account.views._login.LoginView",
        "allauth.account.views._logout.LogoutView",
        "allauth.account.views._account.AccountInactiveView",
        "allauth.account.views._password_reset.PasswordResetView",
        "allauth.account.views._password_reset.PasswordResetDoneView",
        "allauth.account.views._password_reset.PasswordResetFromKeyView",
        "allauth.account.views._password_reset.PasswordResetFromKeyDoneView",
        "allauth.mfa.base.views.AuthenticateView",
        "pli.accounts.views.invitation",
        # The patient's pages of a secure share (pli.sharing): the link's token, the birth
        # date and a one-time code stand in for a login.
        "pli.sharing.patient.landing",
        "pli.sharing.patient.landing_with_slash",
        "pli.sharing.patient.code",
        "pli.sharing.patient.new_code",
        "pli.sharing.patient.documents",
        "pli.sharing.patient.view_document",
        "pli.sharing.patient.download_document",
        "pli.sharing.patient.reply",
        "pli.sharing.patient.keep_alive",
        "pli.sharing.patient.leave",
        # The SMS provider's delivery reports: no session; each is checked against the
        # provider's signature (pli.sharing.hooks).
        "pli.sharing.hooks.twilio_status",
        # REST API: no session; each view authenticates its Bearer token (pli.api).
        "pli.api.api.MeView",
        "pli.api.api.not_found",
        "pli.messaging.api.MailboxListView",
        "pli.messaging.api.MailboxMessagesView",
        "pli.messaging.api.MailboxSearchView",
        "pli.messaging.api.MessageCreateView",
        "pli.messaging.api.MessageDetailView",
        "pli.messaging.api.MessageMoveView",
        "pli.messaging.api.MessageUnreadView",
        "pli.messaging.api.AttachmentView",
        "pli.sharing.api.SharesView",
        "pli.sharing.api.ShareDetailView",
        "pli.sharing.api.ShareRevokeView",
        "pli.sharing.api.ShareUnlockView",
        "pli.sharing.api.ShareResendView",
        "pli.sharing.api.ShareCloseView",
        "pli.sharing.api.ShareSearchView",
        # The API's description and its Swagger UI are public; calling the API is not.
        "pli.api.docs.SchemaView",
        "pli.api.docs.DocsView",
    }
)
