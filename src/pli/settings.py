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
    "pli.core",
    "pli.audit",
    "pli.accounts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "pli.core.middleware.SecurityHeadersMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Secure by default: every view needs a logged-in user unless it is decorated with
    # @login_not_required (the named public list is in pli.core.public).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
if PLI.database_url:
    try:
        _db = dj_database_url.parse(PLI.database_url, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(f"PLI_DATABASE_URL is malformed: {exc}") from None
    _db["ENGINE"] = "django.db.backends.postgresql"
    # Tests name their own database; keep it on the same server.
    _db.setdefault("TEST", {})
else:
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DATA_DIR / "pli.sqlite3"),
        "OPTIONS": {
            # WAL lets readers proceed during a write; IMMEDIATE takes the write lock at
            # BEGIN so concurrent writers queue (busy timeout) instead of failing with
            # "database is locked" half-way through a transaction; secure_delete overwrites
            # freed pages so deleted health data does not linger in the file.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": (
                "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA secure_delete=ON;PRAGMA foreign_keys=ON;"
            ),
        },
        # A file, not Django's shared-cache in-memory default: shared cache uses table
        # locks that ignore the busy timeout, so concurrency tests would not be realistic.
        "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
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
]
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/login/"

# --- Sessions, cookies, transport -----------------------------------------------------
SESSION_COOKIE_AGE = 30 * 60
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
# Patient links carry their token in the path; no page may leak it through Referer.
SECURE_REFERRER_POLICY = "no-referrer"
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

# --- Internationalisation -------------------------------------------------------------
LANGUAGE_CODE = "fr"
LANGUAGES = [("fr", _("Français")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
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
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "pli.core.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Pli API",
    "DESCRIPTION": "Secure health messaging: messages between professionals and patient shares.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Pli ------------------------------------------------------------------------------
PLI_ENV = PLI.env
PLI_KEYS_DIR = PLI.keys_dir
PLI_MASTER_KEY_ENV = PLI.master_key_env
PLI_BLOB_DIR = DATA_DIR / "blobs"
PLI_MAIL_DOMAIN = PLI.mail_domain

# --- Logging --------------------------------------------------------------------------
# Only our own structured lines and Django's errors; request bodies are never logged and
# paths pass through a filter that masks patient-link tokens.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "pli.core.logging.RedactFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": PLI.log_level},
    "loggers": {
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        "django.security": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
