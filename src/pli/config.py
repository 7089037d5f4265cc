"""Configuration from ``PLI_*`` environment variables (12-factor).

Parsed once, before Django settings are built, so that every mistake is reported as one
clear sentence naming the variable instead of a traceback. No Django imports here.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEVELOPMENT = "development"
PRODUCTION = "production"

# Secrets shorter than this, or taken from the well-known placeholders, are refused in
# production: a guessable SECRET_KEY lets anyone forge sessions and password-reset links.
MIN_SECRET_KEY_LENGTH = 50
# A random key of 50 characters from any usual alphabet has far more distinct characters than
# this; "aaaa…" or "abab…" has fewer.
MIN_SECRET_KEY_DISTINCT = 10
PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "changethis", "secret", "insecure"})
# Words of the sentences people write where a key belongs (« please-change-this-secret-key… »,
# « replace-me-with-a-real-key »): a long placeholder is still a placeholder.
_PLACEHOLDER_WORDS = re.compile(r"change|replace|placeholder|example|secret[-_ ]?key|your[-_ ]?key|dummy", re.I)
# What `django-admin startproject` writes into a new project's settings, and Django's own
# deployment check (security.W009) flags: a key copied from a development project.
INSECURE_SECRET_PREFIX = "django-insecure-"  # noqa: S105 (a prefix refused, not a secret)
# A domain name in ASCII (an internationalised one in its xn-- form): labels of letters,
# digits and inner hyphens, separated by dots.
_DOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


class ConfigError(Exception):
    """A configuration problem the operator must fix; the message names the variable."""


@dataclass(frozen=True)
class Config:
    env: str
    data_dir: Path
    database_url: str | None
    public_url: str
    secret_key: str = field(repr=False)
    keys_dir: Path
    master_key_env: str | None = field(repr=False)
    debug: bool
    email_url: str
    sms_url: str
    log_level: str
    allowed_hosts: tuple[str, ...]
    mail_domain: str
    trusted_proxies: tuple[str, ...] = ()
    database_prepared_statements: bool = True
    # Earlier secret keys, still accepted for what was signed or hashed under them (API
    # tokens, invitations, sessions, password resets) while the new one takes over.
    secret_key_fallbacks: tuple[str, ...] = field(default=(), repr=False)

    @property
    def production(self) -> bool:
        return self.env == PRODUCTION

    @property
    def https(self) -> bool:
        return self.public_url.startswith("https://")


def _bool(name: str, environ: dict[str, str], default: bool = False) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _ensure_private_dir(path: Path, name: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:  # a file there: "cannot create …: File exists" misled
        raise ConfigError(f"{name}: {path} is a file, not a directory") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot create {path}: {exc.strerror}") from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(f"{name}: {path} is not readable and writable by this user")
    refuse_root_in_others_dir(path, name, os.geteuid())


def refuse_root_in_others_dir(path: Path, name: str, euid: int) -> None:
    """Root may read and write anything, so a `pli` command run as root (`sudo pli keys
    rotate`, say) would work, and leave behind files the service user cannot read: a key
    file, blobs, the SQLite database. The server then fails later, far from the cause. A
    directory that belongs to another user says who runs Pli: only that user may."""
    if euid != 0:
        return
    try:
        owner = path.stat().st_uid
    except OSError:
        return
    if owner != 0:
        try:
            import pwd

            user = pwd.getpwuid(owner).pw_name
        except (ImportError, KeyError):
            user = f"#{owner}"  # sudo's notation for a uid
        # Quoted for the shell, where "#" would start a comment.
        who = f"'{user}'" if user.startswith("#") else user
        raise ConfigError(
            f"{name}: {path} belongs to {user}, but pli runs as root: run it as that user "
            f"(sudo -E -u {who} pli …, -E to keep the PLI_* variables), or it would leave files there "
            f"that {user} cannot read"
        )


def _weak_secret(secret_key: str) -> bool:
    return (
        len(secret_key) < MIN_SECRET_KEY_LENGTH
        or secret_key.lower() in PLACEHOLDER_SECRETS
        or len(set(secret_key)) < MIN_SECRET_KEY_DISTINCT
    )


def _secret_key_fallbacks(raw: str, secret_key: str) -> tuple[str, ...]:
    """PLI_SECRET_KEY_FALLBACKS: the earlier secret keys, separated by commas (generated keys
    hold none), most recent first. The current key among them is a mistake of the rotation."""
    fallbacks = tuple(part.strip() for part in raw.split(",") if part.strip())
    if secret_key in fallbacks:
        raise ConfigError(
            "PLI_SECRET_KEY_FALLBACKS lists the current PLI_SECRET_KEY: it should hold only the earlier keys"
        )
    return fallbacks


def _development_secret_key(data_dir: Path) -> str:
    """A per-instance key kept in the data dir, so development has no shared default."""
    path = data_dir / "secret_key"
    try:
        if path.exists():
            return path.read_text().strip()
        key = secrets.token_urlsafe(64)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        return key
    except OSError as exc:
        raise ConfigError(f"PLI_DATA_DIR: cannot read or create {path}: {exc.strerror}") from None


def _check_database_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket: a traceback otherwise
        raise ConfigError("PLI_DATABASE_URL has an invalid host (an unclosed [ or ])") from None
    if parts.scheme not in {"postgres", "postgresql", "pgsql", "postgis"}:
        raise ConfigError(
            "PLI_DATABASE_URL must be a PostgreSQL URL such as "
            "postgresql://user:password@host:5432/pli (leave it unset for SQLite)"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("PLI_DATABASE_URL has an invalid port") from None
    if not parts.hostname and "host=" not in parts.query:
        raise ConfigError("PLI_DATABASE_URL has no host")
    if not parts.path.strip("/"):
        raise ConfigError("PLI_DATABASE_URL has no database name (…/dbname)")
    del port
    return url


def _check_public_url(url: str) -> str:
    expected = f"PLI_PUBLIC_URL must be an http(s) URL such as https://pli.example.fr, not {url!r}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is no number or out of range
    except ValueError:  # "[::1" or ":abc": a traceback, or links to a port that cannot be
        raise ConfigError(expected) from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(expected)
    if parts.username is not None or parts.password is not None:
        # Every patient link and e-mail would carry them: https://user:pw@host/p/…
        raise ConfigError("PLI_PUBLIC_URL must not hold a user name or password")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ConfigError("PLI_PUBLIC_URL must not have a path, query or fragment")
    return f"{parts.scheme}://{parts.netloc}"


def _check_production_email_url(url: str) -> None:
    """Patient links and one-time codes go out by e-mail: in production they must reach a
    mail server, and cross the network only encrypted."""
    scheme = url.strip().partition("://")[0].lower()
    if scheme in {"console", "file"}:
        raise ConfigError(
            f"PLI_EMAIL_URL {scheme}:// is for development: it writes patients' links in clear "
            "(a log or files) and sends nothing"
        )
    if scheme == "smtp":
        try:
            host = urlsplit(url.strip()).hostname or ""
        except ValueError:  # an unbalanced IPv6 bracket: said as one line, not a traceback
            raise ConfigError("PLI_EMAIL_URL smtp:// has an invalid host (an unclosed [ or ])") from None
        if not _is_loopback(host):
            raise ConfigError(
                "PLI_EMAIL_URL smtp:// to another machine sends patients' links unencrypted: use "
                "smtp+starttls:// or smtps://, or a relay on this machine (smtp://127.0.0.1)"
            )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load(environ: dict[str, str] | None = None) -> Config:
    env_vars = dict(os.environ if environ is None else environ)
    env = env_vars.get("PLI_ENV", DEVELOPMENT) or DEVELOPMENT
    if env not in {DEVELOPMENT, PRODUCTION}:
        raise ConfigError(f"PLI_ENV must be 'development' or 'production', not {env!r}")
    production = env == PRODUCTION

    raw_data_dir = env_vars.get("PLI_DATA_DIR") or ""
    if production:
        # Resolved against the working directory, a relative path would let the server and
        # the worker (started from different places) keep blobs in different folders.
        if not raw_data_dir:
            raise ConfigError("PLI_DATA_DIR is required in production (an absolute path, e.g. /var/lib/pli)")
        for name in ("PLI_DATA_DIR", "PLI_KEYS_DIR"):
            value = env_vars.get(name) or ""
            if value and not Path(value).expanduser().is_absolute():
                raise ConfigError(f"{name} must be an absolute path in production, not {value!r}")
    data_dir = Path(raw_data_dir or "var").expanduser().resolve()
    _ensure_private_dir(data_dir, "PLI_DATA_DIR")

    database_url = env_vars.get("PLI_DATABASE_URL") or None
    if database_url is not None:
        database_url = _check_database_url(database_url)
    database_prepared_statements = _bool("PLI_DATABASE_PREPARED_STATEMENTS", env_vars, default=True)

    public_url = _check_public_url(env_vars.get("PLI_PUBLIC_URL") or "http://127.0.0.1:8000")

    secret_key = env_vars.get("PLI_SECRET_KEY", "")
    if production:
        if not secret_key:
            raise ConfigError("PLI_SECRET_KEY is required in production (50+ random characters)")
        if _weak_secret(secret_key):
            raise ConfigError(f"PLI_SECRET_KEY is too weak: use at least {MIN_SECRET_KEY_LENGTH} random characters")
        if _PLACEHOLDER_WORDS.search(secret_key):
            raise ConfigError(
                "PLI_SECRET_KEY reads like a placeholder sentence, not a random key: generate one "
                "(`openssl rand -base64 48`)"
            )
        if secret_key.startswith(INSECURE_SECRET_PREFIX):
            raise ConfigError(
                f"PLI_SECRET_KEY is a development key ({INSECURE_SECRET_PREFIX}…): generate one for this "
                "instance (`openssl rand -base64 48`)"
            )
        if not env_vars.get("PLI_PUBLIC_URL"):
            raise ConfigError("PLI_PUBLIC_URL is required in production: the https:// address users reach")
        if public_url.startswith("http://"):
            raise ConfigError("PLI_PUBLIC_URL must use https:// in production")
    elif not secret_key:
        secret_key = _development_secret_key(data_dir)
    secret_key_fallbacks = _secret_key_fallbacks(env_vars.get("PLI_SECRET_KEY_FALLBACKS", ""), secret_key)
    if production and any(fallback.lower() in PLACEHOLDER_SECRETS for fallback in secret_key_fallbacks):
        # Still accepted for checking signatures and hashes: a guessable one forges them.
        raise ConfigError("PLI_SECRET_KEY_FALLBACKS holds a placeholder (changeme…): list only earlier real keys")

    keys_dir_raw = env_vars.get("PLI_KEYS_DIR")
    master_key_env = env_vars.get("PLI_MASTER_KEY") or None
    if production and not keys_dir_raw and not master_key_env:
        raise ConfigError(
            "a master key is required in production: set PLI_KEYS_DIR (a directory holding "
            "master-v1.key, see `pli keys generate`) or PLI_MASTER_KEY"
        )
    keys_dir = Path(keys_dir_raw).expanduser().resolve() if keys_dir_raw else data_dir / "keys"
    if keys_dir_raw and not master_key_env:
        refuse_root_in_others_dir(keys_dir, "PLI_KEYS_DIR", os.geteuid())

    debug = _bool("PLI_DEBUG", env_vars)
    if debug and production:
        raise ConfigError("PLI_DEBUG cannot be enabled in production: it shows internal data on errors")

    # Development keeps outgoing e-mail as .eml files, which the /dev/outbox/ page shows.
    default_email = f"file://{data_dir / 'outbox' / 'email'}" if not production else ""
    email_url = env_vars.get("PLI_EMAIL_URL", default_email)
    if production and not email_url:
        raise ConfigError("PLI_EMAIL_URL is required in production (smtp://host:port or smtps://…)")
    if production:
        _check_production_email_url(email_url)
    # Development keeps SMS as JSON files too. In production that default would leave every
    # patient without their code (and their links and codes in files): it must be chosen.
    sms_url = env_vars.get("PLI_SMS_URL") or (f"file://{data_dir / 'outbox' / 'sms'}" if not production else "")
    if production and not sms_url:
        raise ConfigError(
            "PLI_SMS_URL is required in production (twilio://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com?from=…)"
        )
    if production and sms_url.strip().lower().startswith("file:"):
        raise ConfigError(
            "PLI_SMS_URL file:// is for development and tests: it writes patients' links and codes "
            "in clear files and sends nothing"
        )

    log_level = (env_vars.get("PLI_LOG_LEVEL") or "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("PLI_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")

    host = urlsplit(public_url).hostname or "localhost"
    extra_hosts = [h.strip() for h in env_vars.get("PLI_ALLOWED_HOSTS", "").split(",") if h.strip()]
    allowed_hosts = tuple(dict.fromkeys([host, *extra_hosts, *(["127.0.0.1", "localhost"] if not production else [])]))

    # Mailbox addresses are <name>@<mail domain>; an IP address or localhost makes a poor domain.
    mail_domain = (env_vars.get("PLI_MAIL_DOMAIN") or "").strip().lower()
    if mail_domain and not _DOMAIN.fullmatch(mail_domain):
        # Every mailbox address is made of it, and kept: "jeanne.martin@pli example.fr"
        # would stay wrong after the variable is corrected.
        raise ConfigError(
            f"PLI_MAIL_DOMAIN must be a domain name such as pli.example.fr (xn-- form for accented "
            f"names), not {env_vars['PLI_MAIL_DOMAIN']!r}"
        )
    if not mail_domain:
        mail_domain = host if "." in host and not host.replace(".", "").isdigit() else "pli.localhost"

    trusted_proxies = tuple(p.strip() for p in env_vars.get("PLI_TRUSTED_PROXIES", "").split(",") if p.strip())
    for proxy in trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"PLI_TRUSTED_PROXIES: {proxy!r} is not an IP address or network") from None

    # Read by `pli serve` (gunicorn), which said only "Error: 'x' does not appear to be an
    # IPv4 or IPv6 network" for a wrong entry; checked here as gunicorn does (strictly).
    for proxy in (p.strip() for p in env_vars.get("PLI_FORWARDED_ALLOW_IPS", "").split(",") if p.strip()):
        try:
            if proxy != "*":
                ipaddress.ip_network(proxy)
        except ValueError:
            raise ConfigError(
                f"PLI_FORWARDED_ALLOW_IPS: {proxy!r} is not an IP address or network (e.g. 10.0.0.0/24), or *"
            ) from None

    return Config(
        env=env,
        data_dir=data_dir,
        database_url=database_url,
        public_url=public_url,
        secret_key=secret_key,
        keys_dir=keys_dir,
        master_key_env=master_key_env,
        debug=debug,
        email_url=email_url,
        sms_url=sms_url,
        log_level=log_level,
        allowed_hosts=allowed_hosts,
        mail_domain=mail_domain,
        trusted_proxies=trusted_proxies,
        database_prepared_statements=database_prepared_statements,
        secret_key_fallbacks=secret_key_fallbacks,
    )
