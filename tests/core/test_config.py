from __future__ import annotations

import os
from pathlib import Path

import pytest

from pli.config import ConfigError, load

STRONG = "k" * 30 + "Zq8!mR2#vL9@xT4$wN6%"


def prod_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "PLI_ENV": "production",
        "PLI_DATA_DIR": str(tmp_path),
        "PLI_SECRET_KEY": STRONG,
        "PLI_KEYS_DIR": str(tmp_path / "keys"),
        "PLI_PUBLIC_URL": "https://pli.example.fr",
        "PLI_EMAIL_URL": "smtp://127.0.0.1:25",
        "PLI_SMS_URL": "twilio://ACxxxxxxxx:secret@api.twilio.com?from=Pli",
    }
    env.update(extra)
    return env


def test_development_defaults_generate_a_private_secret_key(tmp_path: Path) -> None:
    config = load({"PLI_DATA_DIR": str(tmp_path)})
    assert config.env == "development"
    assert config.database_url is None
    assert config.public_url == "http://127.0.0.1:8000"
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == config.secret_key
    assert key_file.stat().st_mode & 0o077 == 0
    assert len(config.secret_key) >= 50
    # The same data dir keeps the same key across restarts.
    assert load({"PLI_DATA_DIR": str(tmp_path)}).secret_key == config.secret_key


def test_production_with_everything_set_loads(tmp_path: Path) -> None:
    for relay in (
        "smtp://localhost:25",
        "smtp://[::1]:25",
        "smtp+starttls://relay.example.fr",
        "smtps://u:p@relay.example.fr",
    ):
        assert load(prod_env(tmp_path, PLI_EMAIL_URL=relay)).production
    config = load(prod_env(tmp_path))
    assert config.production and config.https
    assert "127.0.0.1" not in config.allowed_hosts
    assert config.allowed_hosts == ("pli.example.fr",)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"PLI_SECRET_KEY": ""}, "PLI_SECRET_KEY is required"),
        ({"PLI_SECRET_KEY": "changeme"}, "PLI_SECRET_KEY is too weak"),
        ({"PLI_KEYS_DIR": ""}, "a master key is required in production"),
        ({"PLI_PUBLIC_URL": "http://pli.example.fr"}, "must use https"),
        ({"PLI_DEBUG": "1"}, "PLI_DEBUG cannot be enabled"),
        ({"PLI_EMAIL_URL": ""}, "PLI_EMAIL_URL is required"),
        ({"PLI_SMS_URL": ""}, "PLI_SMS_URL is required"),
        ({"PLI_SECRET_KEY": "a" * 60}, "PLI_SECRET_KEY is too weak"),
        ({"PLI_SECRET_KEY": "ab" * 30}, "PLI_SECRET_KEY is too weak"),
        ({"PLI_DATA_DIR": ""}, "PLI_DATA_DIR is required in production"),
        ({"PLI_DATA_DIR": "var/pli"}, "PLI_DATA_DIR must be an absolute path"),
        ({"PLI_KEYS_DIR": "keys"}, "PLI_KEYS_DIR must be an absolute path"),
        ({"PLI_EMAIL_URL": "console://"}, "console:// is for development"),
        ({"PLI_EMAIL_URL": "file:///var/mail/pli"}, "file:// is for development"),
        ({"PLI_EMAIL_URL": "smtp://relay.example.fr:25"}, "use smtp\\+starttls:// or smtps://"),
        ({"PLI_EMAIL_URL": "smtp://[::1:25"}, "PLI_EMAIL_URL .* invalid host"),
        ({"PLI_SMS_URL": "file:///var/sms"}, "PLI_SMS_URL file:// is for development"),
    ],
)
def test_production_refuses_missing_or_default_secrets(tmp_path: Path, override: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(prod_env(tmp_path, **override))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:p@h/db", "must be a PostgreSQL URL"),
        ("postgresql://u:p@h:notaport/db", "invalid port"),
        ("postgresql://u:p@h:5432/", "no database name"),
        ("postgresql:///db", "no host"),
        ("not a url", "must be a PostgreSQL URL"),
        ("postgresql://u:p@[::1/db", r"invalid host \(an unclosed \[ or \]\)"),
    ],
)
def test_malformed_database_url_is_named(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load({"PLI_DATA_DIR": str(tmp_path), "PLI_DATABASE_URL": url})


def test_unknown_env_and_bad_public_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PLI_ENV must be"):
        load({"PLI_DATA_DIR": str(tmp_path), "PLI_ENV": "prod"})
    with pytest.raises(ConfigError, match="PLI_PUBLIC_URL"):
        load({"PLI_DATA_DIR": str(tmp_path), "PLI_PUBLIC_URL": "ftp://x"})
    with pytest.raises(ConfigError, match="PLI_PUBLIC_URL must not have a path"):
        load({"PLI_DATA_DIR": str(tmp_path), "PLI_PUBLIC_URL": "https://x.fr/app"})
    # Accepted before: links went out to a port that cannot be, or with credentials in
    # them; an unclosed IPv6 bracket was a traceback.
    for url in ("https://pli.example.fr:99999", "https://pli.example.fr:abc", "https://[::1"):
        with pytest.raises(ConfigError, match="PLI_PUBLIC_URL must be an http"):
            load({"PLI_DATA_DIR": str(tmp_path), "PLI_PUBLIC_URL": url})
    with pytest.raises(ConfigError, match="PLI_PUBLIC_URL must not hold a user name or password"):
        load({"PLI_DATA_DIR": str(tmp_path), "PLI_PUBLIC_URL": "https://user:pw@pli.example.fr"})
    assert (
        load({"PLI_DATA_DIR": str(tmp_path), "PLI_PUBLIC_URL": "https://[::1]:8443/"}).public_url
        == "https://[::1]:8443"
    )


def test_unreadable_data_dir_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="PLI_DATA_DIR: cannot create"):
        load({"PLI_DATA_DIR": str(blocker / "sub")})
    with pytest.raises(ConfigError, match=f"PLI_DATA_DIR: {blocker} is a file, not a directory"):
        load({"PLI_DATA_DIR": str(blocker)})


def test_prepared_statements_are_on_unless_switched_off(tmp_path: Path) -> None:
    assert load({"PLI_DATA_DIR": str(tmp_path)}).database_prepared_statements is True
    for value in ("off", "0", "false"):
        config = load({"PLI_DATA_DIR": str(tmp_path), "PLI_DATABASE_PREPARED_STATEMENTS": value})
        assert config.database_prepared_statements is False
    with pytest.raises(ConfigError, match="PLI_DATABASE_PREPARED_STATEMENTS must be true or false"):
        load({"PLI_DATA_DIR": str(tmp_path), "PLI_DATABASE_PREPARED_STATEMENTS": "sometimes"})


def test_mail_domain_must_be_a_domain_name(tmp_path: Path) -> None:
    # Mailbox addresses are made of it and stored: a mistyped value gave accounts addresses
    # such as "claire.dupont@pli example.fr", which no correction of the variable mends.
    assert load({"PLI_DATA_DIR": str(tmp_path), "PLI_MAIL_DOMAIN": " Pli.Example.fr "}).mail_domain == "pli.example.fr"
    assert load({"PLI_DATA_DIR": str(tmp_path), "PLI_MAIL_DOMAIN": "xn--sant-epa.fr"}).mail_domain == "xn--sant-epa.fr"
    wrong = ("pli example.fr", "https://pli.example.fr", "@pli.example.fr", "pli.example.fr.", "-pli.fr", "santé.fr")
    for value in wrong:
        with pytest.raises(ConfigError, match="PLI_MAIL_DOMAIN must be a domain name") as caught:
            load({"PLI_DATA_DIR": str(tmp_path), "PLI_MAIL_DOMAIN": value})
        assert repr(value) in str(caught.value)


def test_forwarded_allow_ips_is_checked_with_the_variable_named(tmp_path: Path) -> None:
    # gunicorn refused a wrong entry with "Error: 'foo' does not appear to be an IPv4 or IPv6
    # network", naming no variable, once `pli serve` had passed every other check.
    for value in ("127.0.0.1", "10.0.0.0/24, ::1", "*", ""):
        load({"PLI_DATA_DIR": str(tmp_path), "PLI_FORWARDED_ALLOW_IPS": value})
    for value in ("proxy.internal", "10.0.0.1/24"):  # gunicorn wants the network's own address
        with pytest.raises(ConfigError, match=f"PLI_FORWARDED_ALLOW_IPS: '{value}' is not an IP address"):
            load({"PLI_DATA_DIR": str(tmp_path), "PLI_FORWARDED_ALLOW_IPS": f"127.0.0.1,{value}"})


def test_root_is_refused_in_a_directory_that_belongs_to_the_service_user(tmp_path: Path) -> None:
    """`sudo pli keys rotate` wrote master-v2.key owned by root, mode 0600: the server, run
    as the service user, could not read it, and refused to start at its next restart."""
    from pli.config import refuse_root_in_others_dir

    owned = tmp_path / "pli-data"
    owned.mkdir()
    if owned.stat().st_uid == 0:  # the tests run as root here: give it to "nobody"
        os.chown(owned, 65534, -1)
    owner = owned.stat().st_uid
    with pytest.raises(ConfigError, match=r"PLI_KEYS_DIR: .* but pli runs as root: run it as that user") as caught:
        refuse_root_in_others_dir(owned, "PLI_KEYS_DIR", euid=0)
    # The command it advises keeps the environment: sudo's default env_reset drops every PLI_*
    # variable, and `sudo -u pli pli migrate` then set up a development instance in ./var.
    import pwd

    assert f"(sudo -E -u {pwd.getpwuid(owner).pw_name} pli …," in str(caught.value)
    if os.geteuid() == 0:
        # A uid with no name here (a volume from another machine): quoted, "#" starting a comment.
        os.chown(owned, 54321, -1)
        with pytest.raises(ConfigError, match=r"belongs to #54321, .*\(sudo -E -u '#54321' pli …,"):
            refuse_root_in_others_dir(owned, "PLI_KEYS_DIR", euid=0)
    # The owner itself goes ahead.
    refuse_root_in_others_dir(owned, "PLI_KEYS_DIR", euid=owner)
