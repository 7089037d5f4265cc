"""Django settings, built from ``pli.config`` (``PLI_*`` environment variables)."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from pli import config as pli_config

try:
    PLI = pli_config.load()
except pli_config.ConfigError as exc:
    # ImproperlyConfigured is what Django tooling expects; `pli` prints it as one line.
    raise ImproperlyConfigured(str(exc)) from None

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = PLI.data_dir
SECRET_KEY = PLI.secret_key
SECRET_KEY_FALLBACKS = list(PLI.secret_key_fallbacks)
DEBUG = PLI.debug
ALLOWED_HOSTS = list(PLI.allowed_hosts)
PUBLIC_URL = PLI.public_url
CSRF_TRUSTED_ORIGINS = [PLI.public_url]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks",
    "django_tasks_db",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our own static files, not a CDN
    "pli.core",
    "pli.audit",
    "pli.accounts",
    # After pli.accounts, so that its templates override allauth's.
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "pli.directory",
    "pli.api",
    "pli.messaging",
    "pli.sharing",
]

MIDDLEWARE = [
    "pli.core.middleware.RequestIdMiddleware",
    # A page that fails for a full disk says so (507) instead of the generic error page.
    "pli.core.storage.StorageFullMiddleware",
    "pli.core.middleware.ClientTimeoutMiddleware",
    "pli.core.middleware.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "pli.core.middleware.SecurityHeadersMiddleware",
    "csp.middleware.CSPMiddleware",
    # Django's, but a page's poll (pli.accounts.middleware.PASSIVE_VIEWS) is not activity.
    "pli.accounts.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "pli.core.middleware.RequestFramingMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A session ends PLI_SESSION_MAX_HOURS after sign-in, however active (before the
    # login check below, which then sends the person to sign in again).
    "pli.accounts.middleware.SessionLifetimeMiddleware",
    # Secure by default: every view needs a logged-in user unless it is decorated with
    # @login_not_required (the named public list is in pli.core.public).
    "pli.accounts.middleware.LoginRequiredMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "pli.accounts.middleware.UserSessionsMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # A signed-in user without a second factor reaches only the enrolment pages.
    "pli.accounts.middleware.SecondFactorRequiredMiddleware",
    # A blank 405 (an action's address opened by hand) becomes a page that leads back.
    "pli.core.middleware.MethodNotAllowedPageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if os.environ.get("PLI_TESTING") == "1":
    INSTALLED_APPS.append("pli.testing")

ROOT_URLCONF = "pli.urls"
WSGI_APPLICATION = "pli.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "pli.core.context_processors.pli",
                "pli.messaging.context_processors.mail",
                "pli.accounts.context_processors.accounts",
            ],
        },
    },
]

# A file sent to a view that takes none is dropped, never kept in memory or written to a
# plaintext temporary file; views that take files install their encrypting handler.
FILE_UPLOAD_HANDLERS = ["pli.core.uploads.DropFiles"]

# --- Database -------------------------------------------------------------------------
if PLI.database_url:
    try:
        _db = dj_database_url.parse(PLI.database_url, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(f"PLI_DATABASE_URL is malformed: {exc}") from None
    _db["ENGINE"] = "django.db.backends.postgresql"
    # Parameters bound by the server rather than quoted into the SQL text, and the
    # statements a connection keeps running prepared once (psycopg prepares one at its 5th
    # run), so PostgreSQL stops parsing and planning them for every request: sends went up
    # by about a fifth on the benchmark (docs/decisions.md). Django leaves both off for the
    # sake of transaction-pooling proxies that lose prepared statements between
    # transactions; behind one of those, PLI_DATABASE_PREPARED_STATEMENTS=off. Options in
    # the URL's query string (?server_side_binding=false) win.
    _options = _db.setdefault("OPTIONS", {})
    _options.setdefault("server_side_binding", True)
    if PLI.database_prepared_statements:
        _options.setdefault("prepare_threshold", 5)
    # Tests name their own database; keep it on the same server.
    _db.setdefault("TEST", {})
else:
    _db = {
        # Django's backend, with writers queued on a kernel lock (pli/core/sqlite3/base.py).
        "ENGINE": "pli.core.sqlite3",
        "NAME": str(DATA_DIR / "pli.sqlite3"),
        "OPTIONS": {
            # WAL lets readers proceed during a write; IMMEDIATE takes the write lock at
            # BEGIN so concurrent writers queue (busy timeout) instead of failing with
            # "database is locked" half-way through a transaction; synchronous=FULL syncs the
            # WAL at every commit, so that a 2xx survives a power cut (docs/decisions.md);
            # secure_delete overwrites freed pages so deleted health data does not linger.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": (
                "PRAGMA journal_mode=WAL;PRAGMA synchronous=FULL;PRAGMA secure_delete=ON;PRAGMA foreign_keys=ON;"
            ),
        },
        # A file, not Django's shared-cache in-memory default: shared cache uses table
        # locks that ignore the busy timeout, so concurrency tests would not be realistic.
        "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
        # Keep each server thread's connection between requests, as for PostgreSQL: opening
        # one runs the PRAGMAs above and starts with a cold page cache (≈10 ms a request).
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Authentication -------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "pli.accounts.password_validation.ObviousPatternValidator"},
]
AUTH_USER_MODEL = "accounts.User"
# Only allauth's backend: every password check goes through its per-account and per-address
# limits (and ours, global); there is no username to log in with.
AUTHENTICATION_BACKENDS = ["allauth.account.auth_backends.AuthenticationBackend"]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

# --- Sessions, cookies, transport -----------------------------------------------------
try:
    PLI_SESSION_IDLE_MINUTES = int(os.environ.get("PLI_SESSION_IDLE_MINUTES") or 30)
    if not 1 <= PLI_SESSION_IDLE_MINUTES <= 24 * 60:
        raise ValueError
except ValueError:
    raise ImproperlyConfigured(
        "PLI_SESSION_IDLE_MINUTES must be a whole number of minutes between 1 and 1440"
    ) from None
try:
    PLI_SESSION_MAX_HOURS = int(os.environ.get("PLI_SESSION_MAX_HOURS") or 12)
    if not 1 <= PLI_SESSION_MAX_HOURS <= 7 * 24:
        raise ValueError
except ValueError:
    raise ImproperlyConfigured("PLI_SESSION_MAX_HOURS must be a whole number of hours between 1 and 168") from None
SESSION_COOKIE_AGE = PLI_SESSION_IDLE_MINUTES * 60
SESSION_SAVE_EVERY_REQUEST = True  # 30 minutes *idle*, not 30 minutes after login
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_NAME = "pli_session"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_NAME = "pli_csrf"
CSRF_FAILURE_VIEW = "pli.core.views.csrf_failure"
LANGUAGE_COOKIE_SECURE = PLI.https
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = PLI.https
CSRF_COOKIE_SECURE = PLI.https
SECURE_CONTENT_TYPE_NOSNIFF = True
# Patient links carry their token in the path; no page may leak it through Referer to
# another site. Not "no-referrer": under it Chromium sends "Origin: null" with every form
# POST, which Django's CSRF check rightly refuses (no form would work). "same-origin" sends
# the Referer to Pli itself only (access logs redact tokens) and a real Origin header.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PLI.production:
    SECURE_HSTS_SECONDS = 63072000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = False
    # TLS is terminated by the operator's reverse proxy, which must set this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# No inline script or style anywhere; everything is served from our own origin.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "frame-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
    }
}

# --- Accounts: login, second factor, sessions (django-allauth) -------------------------
ACCOUNT_ADAPTER = "pli.accounts.adapter.AccountAdapter"
MFA_ADAPTER = "pli.accounts.adapter.MFAAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]  # sign-up itself is closed (adapter)
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
# Addresses are proven by the invitation link, or vouched for by the operator's command.
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_SESSION_REMEMBER = False
# Sensitive changes ask for the password or the second factor again (no e-mailed codes).
ACCOUNT_REAUTHENTICATION_METHODS = ("password", "mfa")
ACCOUNT_LOGOUT_REDIRECT_URL = "/login/"
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if PLI.https else "http"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Pli] "
# Password reset answers the same whether the address is known or not, and sends nothing
# to unknown addresses (that would make Pli a spam relay).
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False
ACCOUNT_EMAIL_NOTIFICATIONS = True  # password and second-factor changes are e-mailed to the user
ACCOUNT_FORMS = {
    "login": "pli.accounts.forms.LoginForm",
    "reset_password": "pli.accounts.forms.ResetPasswordForm",
    "change_password": "pli.accounts.forms.ChangePasswordForm",
}
MFA_FORMS = {
    "activate_totp": "pli.accounts.forms.ActivateTOTPForm",
    "authenticate": "pli.accounts.forms.SecondFactorForm",
    "reauthenticate": "pli.accounts.forms.SecondFactorReauthenticateForm",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = False  # a passkey is a second factor here, never a password substitute
MFA_TOTP_ISSUER = "Pli"
MFA_TOTP_TOLERANCE = 1  # one 30 s step of clock drift; a used code is refused for the whole window
# WebAuthn demands a secure origin; plain http://127.0.0.1 is accepted in development only.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = not PLI.production
USERSESSIONS_TRACK_ACTIVITY = True
# Attempt limits. Per address (ip), per account (key) and per user; the instance-wide ("global")
# limits are applied by pli.accounts.ratelimits. "login_failed" also counts second-factor codes.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/5m/key",
    "reset_password": "20/m/ip,3/15m/key",
    "reset_password_from_key": "20/m/ip",
    "reauthenticate": "10/m/user",
    "change_password": "5/m/user",
    "pli_invitation": "20/m/ip",  # opening or submitting an invitation link
}
PLI_GLOBAL_RATE_LIMITS = {
    "login_failed": "300/m",
    "second_factor_failed": "300/m",
    "reset_password": "100/m",
    "invitation": "300/m",
}
# Rate-limit counters and used TOTP codes must be shared by every server process: they live
# in the database (table created by `pli migrate`).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "pli_cache",
        # Never evict live counters to make room: an attacker could flush them by flooding.
        "OPTIONS": {"MAX_ENTRIES": 1_000_000},
    }
}
PLI_INVITATION_DAYS = 7

# --- E-mail ---------------------------------------------------------------------------
from pli.notify.email import email_settings  # noqa: E402

_email = email_settings(PLI.email_url, os.environ.get("PLI_EMAIL_FROM"), PLI.mail_domain)
EMAIL_BACKEND = _email.backend
EMAIL_HOST = _email.host
EMAIL_PORT = _email.port
EMAIL_HOST_USER = _email.user
EMAIL_HOST_PASSWORD = _email.password
EMAIL_USE_TLS = _email.use_tls
EMAIL_USE_SSL = _email.use_ssl
EMAIL_TIMEOUT = _email.timeout
if _email.file_path is not None:
    EMAIL_FILE_PATH = _email.file_path
DEFAULT_FROM_EMAIL = SERVER_EMAIL = _email.default_from

# --- Internationalisation -------------------------------------------------------------
LANGUAGE_CODE = "fr"
LANGUAGES = [("fr", _("Français")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
# English with dates day first, as the forms take them (pli/formats/en/formats.py).
FORMAT_MODULE_PATH = ["pli.formats"]
USE_I18N = True
TIME_ZONE = "Europe/Paris"
USE_TZ = True

# --- Static files ---------------------------------------------------------------------
STATIC_URL = "/static/"
# Static assets are few and served straight from the app folders by WhiteNoise: no
# collectstatic step for the operator, nothing fetched from a CDN.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False

# --- Background tasks -----------------------------------------------------------------
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# --- REST API -------------------------------------------------------------------------
# The API authenticates by personal token only (pli.api): no session, so no CSRF and no
# cookie riding on a browser tab. See pli/api/urls.py for how an app adds its endpoints.
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "pli.api.schema.PliAutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["pli.api.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "pli.core.api.AcceptHeaderNegotiation",
    "DEFAULT_PARSER_CLASSES": [
        "pli.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["pli.api.throttling.TokenRateThrottle"],
    # Per token, counted in the shared cache (CACHES above) so every server process agrees.
    "DEFAULT_THROTTLE_RATES": {"api_token": "600/min"},
    "EXCEPTION_HANDLER": "pli.core.api.exception_handler",
    # An object, not None: code reading request.user.is_authenticated must not crash.
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Pli API",
    "DESCRIPTION": "Secure health messaging: messages between professionals and patient shares.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The description of the API is public (the code is open source); calling it is not.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # validatorUrl null: Swagger UI would otherwise send the schema to swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "persistAuthorization": False, "validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    "PATH_CONVERTER_OVERRIDES": {"guid": {"type": "string", "format": "uuid"}},
    "ENUM_NAME_OVERRIDES": {
        "ShareEventTypeEnum": "pli.sharing.api.EVENT_TYPES",
        "ShareFailureReasonEnum": "pli.sharing.notifications.FAILURE_CATEGORIES",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "pli.api.schema.document_error_responses",
    ],
}

# --- Pli ------------------------------------------------------------------------------
PLI_ENV = PLI.env
PLI_KEYS_DIR = PLI.keys_dir
PLI_MASTER_KEY_ENV = PLI.master_key_env
PLI_BLOB_DIR = DATA_DIR / "blobs"
PLI_MAIL_DOMAIN = PLI.mail_domain
PLI_TRUSTED_PROXIES = PLI.trusted_proxies


# --- Messaging ------------------------------------------------------------------------
def _env_count(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = os.environ.get(name) or str(default)
    try:
        value = int(raw)
        if not minimum <= value <= maximum:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number between {minimum} and {maximum}") from None
    return value


# Per message: how many attachments, and how many bytes they may total (checked while the
# upload streams in). Blobs of aborted sends and shares older than PLI_ORPHAN_BLOB_AGE
# seconds are removed by `pli messaging cleanup-blobs` (attachments) and the worker's
# periodic jobs (both).
PLI_MAX_ATTACHMENTS = _env_count("PLI_MAX_ATTACHMENTS", 20, 0, 1000)
PLI_MAX_MESSAGE_BYTES = _env_count("PLI_MAX_MESSAGE_BYTES", 100 * 2**20, 0, 2**40)
PLI_ORPHAN_BLOB_AGE = _env_count("PLI_ORPHAN_BLOB_AGE", 3600, 3600, 30 * 86400)
# Days a message stays in a mailbox's trash before the worker deletes that copy for good
# (pli.messaging.services.purge_old_trash); 0 keeps it until a user deletes it.
PLI_TRASH_DAYS = _env_count("PLI_TRASH_DAYS", 30, 0, 3650)
# CNIL: a mailbox unused for this many days is emptied (a shared one also closed), its
# members warned 30 days before (pli.messaging.services.handle_inactive_mailboxes); 0 never.
PLI_MAILBOX_INACTIVE_DAYS = _env_count("PLI_MAILBOX_INACTIVE_DAYS", 365, 0, 36500)
# A member is e-mailed when a message arrives in one of their mailboxes (no content: see
# pli.messaging.services.notify_new_mail), at most once every this many minutes per mailbox;
# 0 never. Each person can turn it off on their account page.
PLI_NEW_MAIL_EMAIL_MINUTES = _env_count("PLI_NEW_MAIL_EMAIL_MINUTES", 30, 0, 10080)
if 0 < PLI_MAILBOX_INACTIVE_DAYS < 60:
    # The warning goes 30 days before: a shorter period would empty a mailbox its members
    # used a few weeks ago.
    raise ImproperlyConfigured("PLI_MAILBOX_INACTIVE_DAYS must be 0 (never) or at least 60")

# /healthz reports the data directory's disk as "low" (and its status as "degraded") once
# less than this many megabytes are free there: room for about ten of the largest sends, so
# that an operator is told before uploads start failing with 507.
PLI_DISK_MIN_FREE_MB = _env_count("PLI_DISK_MIN_FREE_MB", 2000, 0, 10**9)
# Seconds a client may leave `pli serve` waiting, sending or reading, before it is let go
# (pli.core.middleware.ClientTimeoutMiddleware).
PLI_CLIENT_TIMEOUT = _env_count("PLI_CLIENT_TIMEOUT", 60, 1, 3600)

# --- Patient shares and SMS (pli.sharing, pli.notify.sms) ------------------------------
from pli.notify.sms import SmsConfigError, parse_allowed_regions, parse_sms_url  # noqa: E402

PLI_SMS_URL = PLI.sms_url
try:
    parse_sms_url(PLI_SMS_URL)  # fail at start-up, not at the first SMS
    # Regions whose mobile numbers may receive SMS (ISO codes); default France + DROM.
    PLI_SMS_ALLOWED_REGIONS = parse_allowed_regions(os.environ.get("PLI_SMS_ALLOWED_REGIONS"))
except SmsConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from None
# Per share: how many documents, how large each may be, how many bytes in all.
PLI_SHARE_MAX_DOCUMENTS = _env_count("PLI_SHARE_MAX_DOCUMENTS", 20, 1, 1000)
PLI_SHARE_MAX_DOCUMENT_BYTES = _env_count("PLI_SHARE_MAX_DOCUMENT_BYTES", 100 * 10**6, 1, 2**40)
PLI_SHARE_MAX_BYTES = _env_count("PLI_SHARE_MAX_BYTES", 200 * 10**6, 1, 2**40)


def _env_hours(name: str, default: str) -> tuple[int, int]:
    raw = (os.environ.get(name) or default).strip()
    start, sep, end = raw.partition("-")
    try:
        hours = (int(start), int(end))
        if not sep or not 0 <= hours[0] < hours[1] <= 24:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be two hours of the day such as 9-20 (from 9:00 to 20:00; 0-24 for any time)"
        ) from None
    return hours


# The hours, in the patient's local time, in which the 5-day reminder may go out: an
# unattended message, it waits for the morning rather than wake anyone (pli.sharing.services).
PLI_REMINDER_HOURS = _env_hours("PLI_REMINDER_HOURS", "9-20")

# --- Logging --------------------------------------------------------------------------
# Only our own structured lines and Django's errors; request bodies are never logged and
# paths pass through a filter that masks patient-link tokens.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "pli.core.logging.RedactFilter"},
        "without_traceback": {"()": "pli.core.logging.WithoutTraceback"},
        "pli_host_setting": {"()": "pli.core.logging.PliHostSetting"},
        "request_id": {"()": "pli.core.logging.RequestIdFilter"},
    },
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact", "request_id"]},
    },
    "root": {"handlers": ["console"], "level": PLI.log_level},
    "loggers": {
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        "django.security": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # Requests refused as expected, which anyone can send: a wrong Host header, a form
        # over Django's limits (size, number of fields or files). A 400 for the client; one
        # warning line for the operator, not an error with a traceback at every request.
        **{
            f"django.security.{name}": {
                "handlers": ["console"],
                "level": "WARNING",
                "filters": ["without_traceback"],
                "propagate": False,
            }
            for name in ("RequestDataTooBig", "TooManyFieldsSent", "TooManyFilesSent")
        },
        "django.security.DisallowedHost": {
            "handlers": ["console"],
            "level": "WARNING",
            "filters": ["without_traceback", "pli_host_setting"],
            "propagate": False,
        },
    },
}
