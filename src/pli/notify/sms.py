"""SMS: ``PLI_SMS_URL`` selects a backend; phone numbers are normalised to E.164.

Accepted URLs::

    file:///directory
        one JSON file per SMS (``to``, ``text``, ``id``, ``created_at``), for development
        and tests; written atomically, readable by the owner only.
    twilio://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com?from=SENDER
    twilio://API_KEY_SID:API_KEY_SECRET@api.twilio.com?account_sid=AC…&from=SENDER
        Twilio's Programmable Messaging REST API (``POST /2010-04-01/Accounts/{AccountSid}/
        Messages.json``, form-encoded ``To``, ``From`` or ``MessagingServiceSid``, ``Body``,
        HTTP Basic authentication). ``from`` is a Twilio number in E.164 (its ``+`` as is)
        or an alphanumeric sender id (a space written ``%20``); ``messaging_service_sid=MG…``
        may replace it. ``endpoint=https://host`` sends to another base URL (a proxy, or a
        loopback server in tests; plain http is accepted for loopback addresses only, since
        the request carries the credentials).

        Delivery reports: when ``PLI_PUBLIC_URL`` is https, each message asks Twilio to post
        its status changes to ``PLI_PUBLIC_URL/hooks/sms/twilio`` (``StatusCallback``), where
        Pli checks the request's ``X-Twilio-Signature`` with the account's Auth Token: the
        password of the first form, ``auth_token=…`` in the second (without it, with an API
        key, no report is asked for: it could not be verified).

Only mobile numbers of the allowed regions are accepted (by default metropolitan France and
the overseas departments; ``PLI_SMS_ALLOWED_REGIONS=FR,BE`` changes that).

This module is imported by the settings: nothing here reads Django's configuration at
import time. Texts are never logged: they hold links and one-time codes.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import email.utils
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import os
import re
import tempfile
import unicodedata
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import SplitResult, parse_qs, unquote, urlencode, urlsplit

import phonenumbers
import phonenumbers.timezone

logger = logging.getLogger(__name__)

# Metropolitan France and the five overseas departments (Guadeloupe, Martinique, Guyane,
# La Réunion, Mayotte): the numbers a French practice's patients normally have.
DEFAULT_ALLOWED_REGIONS: tuple[str, ...] = ("FR", "GP", "MQ", "GF", "RE", "YT")

_EXPECTED = "PLI_SMS_URL must look like file:///directory or twilio://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com?from=SENDER"
# A provider that does not answer must not hold a worker for long; the job is retried.
HTTP_TIMEOUT_SECONDS = 15
TWILIO_API_BASE = "https://api.twilio.com"
TWILIO_API_VERSION = "2010-04-01"
# Twilio caps a message body at 1,600 characters; ours are far shorter.
MAX_TEXT_LENGTH = 1600


class SmsConfigError(ValueError):
    """``PLI_SMS_URL`` or ``PLI_SMS_ALLOWED_REGIONS`` is wrong; the message names the variable."""


class InvalidPhoneNumber(ValueError):
    """Not a mobile number this instance may text. ``code`` says why, for a form message."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class SmsError(Exception):
    """Sending failed. ``retryable`` tells the delivery job whether to try again later;
    ``retry_after`` (seconds) is how long the provider asked us to wait, if it said."""

    retryable = True

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        # ``reason`` is a short code or the provider's status, never the text or the number.
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class SmsRejected(SmsError):
    """The provider refused this message for good (invalid number, blocked content)."""

    retryable = False


# Twilio's error codes (https://www.twilio.com/docs/api/errors) that refuse the number
# itself: not a valid number, not a mobile, unreachable by SMS, or one whose owner
# answered STOP. Other refusals (the sender, the region's permission, the content) are
# about Pli's account or settings, not the patient's number.
TWILIO_NUMBER_ERRORS = frozenset({21211, 21214, 21217, 21401, 21407, 21421, 21610, 21612, 21614})


# Twilio's error codes in a delivery report (``ErrorCode`` of an ``undelivered`` or
# ``failed`` message) that say the handset was not reached: unreachable (switched off for
# days, or no longer in service), unknown, or a landline or a carrier without SMS. A report
# may also carry one of TWILIO_NUMBER_ERRORS: a message accepted first (a Messaging
# Service's ``accepted``) and refused for its number afterwards (STOP, no mobile).
TWILIO_UNREACHED_ERRORS = frozenset({30003, 30005, 30006})
# Those that say the message itself was blocked or filtered on its way.
TWILIO_BLOCKED_ERRORS = frozenset({30004, 30007})


def refuses_number(reason: str) -> bool:
    """Whether a refusal's reason (``http_400:21614``, as :class:`SmsRejected` gives it, or
    ``undelivered:30005`` from a delivery report) is about the number rather than about
    Pli's account or message."""
    status, _sep, code = reason.partition(":")
    if not code.isdigit():
        return False
    if status == "http_400":
        return int(code) in TWILIO_NUMBER_ERRORS
    return status == "undelivered" and int(code) in TWILIO_UNREACHED_ERRORS | TWILIO_NUMBER_ERRORS


def blocks_message(reason: str) -> bool:
    """Whether a delivery report's reason (``undelivered:30007``) says the message was
    blocked or filtered (by the carrier, or the recipient's own filter)."""
    status, _sep, code = reason.partition(":")
    return status == "undelivered" and code.isdigit() and int(code) in TWILIO_BLOCKED_ERRORS


class SmsBackend(Protocol):
    def send(self, to: str, text: str, reference: str = "") -> str:
        """Send ``text`` to ``to`` (E.164); return the provider's message id. ``reference``
        (Pli's id of the message) comes back with the provider's delivery reports."""
        ...


# -- phone numbers ---------------------------------------------------------------------------


def parse_allowed_regions(raw: str | None) -> tuple[str, ...]:
    """``PLI_SMS_ALLOWED_REGIONS``: comma-separated ISO 3166 region codes (``FR,GP,BE``)."""
    if raw is None or not raw.strip():
        return DEFAULT_ALLOWED_REGIONS
    regions: list[str] = []
    supported = phonenumbers.SUPPORTED_REGIONS
    for item in raw.split(","):
        code = item.strip().upper()
        if not code:
            continue
        if code not in supported:
            raise SmsConfigError(f"PLI_SMS_ALLOWED_REGIONS: {code!r} is not a region code such as FR, GP or BE")
        if code not in regions:
            regions.append(code)
    if not regions:
        raise SmsConfigError("PLI_SMS_ALLOWED_REGIONS names no region")
    return tuple(regions)


_MOBILE_TYPES = frozenset({phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE})


def normalise_mobile(raw: str, allowed_regions: Iterable[str] = DEFAULT_ALLOWED_REGIONS) -> str:
    """Return ``raw`` as E.164 (``+33612345678``) if it is a mobile of an allowed region.

    National numbers are tried against each allowed region in turn: ``0690 12 34 56`` is a
    Guadeloupe mobile although it is not valid in metropolitan France.
    """
    regions = tuple(allowed_regions)
    text = (raw or "").strip()
    if not text:
        raise InvalidPhoneNumber("empty")
    if len(text) > 40:
        raise InvalidPhoneNumber("invalid")
    candidates: list[phonenumbers.PhoneNumber] = []
    for region in regions or DEFAULT_ALLOWED_REGIONS:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            candidates.append(number)
            if phonenumbers.region_code_for_number(number) in regions:
                break
    if not candidates:
        raise InvalidPhoneNumber("invalid")
    number = candidates[-1]
    if phonenumbers.region_code_for_number(number) not in regions:
        raise InvalidPhoneNumber("region")
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise InvalidPhoneNumber("not_mobile")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def time_zone_name(e164: str) -> str | None:
    """The time zone of the place a mobile number belongs to (``+590690…`` →
    ``America/Guadeloupe``), or None when phonenumbers knows of none. Where a number may be
    in several zones (Mayotte and La Réunion share +262), the first it names."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    names = [name for name in phonenumbers.timezone.time_zones_for_number(number) if name != "Etc/Unknown"]
    return names[0] if names else None


def display_number(e164: str) -> str:
    """``+33612345678`` → ``06 12 34 56 78`` (a French number as the French write it),
    ``+262692123456`` → ``+262 692 12 34 56``; as stored if it cannot be parsed."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    style = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if number.country_code == 33
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return phonenumbers.format_number(number, style)


def mask_number(e164: str) -> str:
    """``+33612345678`` → ``+33 6 •• •• •• 78``: enough for a person to recognise their phone."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return "••"
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    prefix = f"+{number.country_code}"
    rest = formatted[len(prefix) :]
    positions = [i for i, ch in enumerate(rest) if ch.isdigit()]
    hidden = set(positions[1:-2])
    return prefix + "".join("•" if i in hidden else ch for i, ch in enumerate(rest))


# -- text encoding ---------------------------------------------------------------------------

# GSM 03.38: the default alphabet (one septet a character) and its extension table (two).
# A text with any other character goes as UCS-2: 70 characters a segment instead of 160
# (67 instead of 153 once split), about twice the segments for the same text.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
# Characters with no GSM equivalent once their accent is dropped.
_GSM_REPLACEMENTS = {
    **dict.fromkeys("\u2018\u2019\u02bc`\u00b4", "'"),  # curly and modifier apostrophes
    **dict.fromkeys("\u201c\u201d\u00ab\u00bb", '"'),  # curly quotes, guillemets
    **dict.fromkeys("\u2010\u2011\u2013\u2014", "-"),  # hyphens and dashes
    **dict.fromkeys("\u00a0\u2009\u202f", " "),  # non-breaking and thin spaces
    "\u2026": "...",
    "\u0153": "oe",
    "\u0152": "OE",
}


def _is_gsm(char: str) -> bool:
    return char in GSM_BASIC or char in GSM_EXTENSION


def to_gsm(text: str) -> str:
    """``text`` in the GSM alphabet when it can be, accents it lacks dropped (ô → o, ç → c,
    a curly apostrophe → '), so that one name such as "Hôpital" or "François" does not turn the whole SMS
    into UCS-2 and double its segments. A text that would still need UCS-2 (a name in
    another script) is returned as it was: dropping part of it would only garble it."""
    if all(_is_gsm(char) for char in text):
        return text
    out = []
    for char in text:
        if _is_gsm(char):
            out.append(char)
            continue
        replacement = _GSM_REPLACEMENTS.get(char)
        if replacement is None:
            replacement = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        if not replacement or not all(_is_gsm(c) for c in replacement):
            return text
        out.append(replacement)
    return "".join(out)


_PLAIN_SPACES = str.maketrans(dict.fromkeys("\u00a0\u202f", " "))


def plain_spaces(text: str) -> str:
    """``text`` with French typography's non-breaking spaces (before « : » and « ? ») as
    plain ones: the GSM alphabet has none, and one made the whole SMS UCS-2. Nothing else
    changes (a link has no space to change)."""
    return text.translate(_PLAIN_SPACES)


def segments(text: str) -> tuple[str, int]:
    """The encoding (``"gsm"`` or ``"ucs2"``) and the number of segments ``text`` takes."""
    if all(_is_gsm(char) for char in text):
        units = sum(2 if char in GSM_EXTENSION else 1 for char in text)
        return "gsm", 1 if units <= 160 else -(-units // 153)
    units = len(text.encode("utf-16-le")) // 2
    return "ucs2", 1 if units <= 70 else -(-units // 67)


# -- backends --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileBackend:
    """One JSON file per SMS in ``directory``, named so that a listing sorts by time."""

    directory: Path

    def send(self, to: str, text: str, reference: str = "") -> str:
        message_id = uuid.uuid4().hex
        now = datetime.datetime.now(datetime.UTC)
        record = {"id": message_id, "to": to, "text": text, "created_at": now.isoformat()}
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{message_id}.json"
        _write_atomically(self.directory / name, json.dumps(record, ensure_ascii=False, indent=1).encode())
        return message_id


def _write_atomically(path: Path, data: bytes) -> None:
    # Written under a temporary name then renamed: a reader never sees half an SMS.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.rename(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


@dataclass(frozen=True)
class TwilioBackend:
    """Twilio Programmable Messaging: create a Message resource."""

    username: str  # Account SID, or an API key SID (SK…)
    password: str = field(repr=False)  # Auth token, or the API key's secret
    account_sid: str
    sender: str = ""
    messaging_service_sid: str = ""
    endpoint: str = TWILIO_API_BASE
    timeout: float = HTTP_TIMEOUT_SECONDS
    # The account's Auth Token, which signs Twilio's requests to Pli ("" if not known).
    signing_key: str = field(default="", repr=False)
    # Where Twilio posts each message's status changes ("" for none): see get_backend.
    status_callback: str = ""

    @property
    def messages_url(self) -> str:
        return f"{self.endpoint}/{TWILIO_API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    def callback_url(self, reference: str = "") -> str:
        """The ``StatusCallback`` of a message: naming Pli's ``reference`` (a notification's
        id), so that a report that comes before the worker has recorded the message's id
        (Twilio's answer) still finds its notification. Twilio signs it, query included."""
        return f"{self.status_callback}?{urlencode({'n': reference})}" if reference else self.status_callback

    def request_for(self, to: str, text: str, reference: str = "") -> urllib.request.Request:
        fields = {"To": to, "Body": text}
        if self.messaging_service_sid:
            fields["MessagingServiceSid"] = self.messaging_service_sid
        if self.sender:
            fields["From"] = self.sender
        if self.status_callback:
            fields["StatusCallback"] = self.callback_url(reference)
        credentials = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return urllib.request.Request(  # noqa: S310 - the scheme is checked when the URL is parsed
            self.messages_url,
            data=urlencode(fields).encode("ascii"),
            method="POST",
            headers={
                "Authorization": f"Basic {credentials}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
                "User-Agent": "Pli",
            },
        )

    def send(self, to: str, text: str, reference: str = "") -> str:
        request = self.request_for(to, text, reference)
        response: http.client.HTTPResponse | urllib.error.HTTPError
        try:
            response = _OPENER.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            response = exc
        except (urllib.error.URLError, OSError) as exc:
            raise SmsError(f"unreachable:{type(exc).__name__}") from None
        except http.client.HTTPException as exc:
            # An answer that is not HTTP (a status line of garbage): nothing says the
            # message was taken, so it is tried again, like any provider fault.
            raise SmsError(f"bad_response:{type(exc).__name__}") from None
        with response:
            status = response.getcode() or 0
            retry_after = _retry_after(response.headers.get("Retry-After"))
            try:
                body: bytes | None = response.read(65536)
            except (OSError, http.client.HTTPException):
                body = None  # cut short or timed out after the status line
        payload = _json_object(body or b"")
        if status in (200, 201, 202):
            sid = payload.get("sid")
            if isinstance(sid, str) and sid:
                return sid
            if status != 200:
                # Created (Twilio answers 201): the message is Twilio's to send, whatever
                # the rest of the answer says. Sending it again would text the patient again
                # at every retry.
                logger.warning("SMS accepted (HTTP %d) without a readable message id", status)
                return ""
            raise SmsError("bad_response")
        code = payload.get("code")
        reason = f"http_{status}" + (f":{code}" if isinstance(code, int) else "")
        # 400: Twilio validated the request and refused it (invalid or unreachable number,
        # blocked sender…): trying again would fail the same way. Anything else (429, 5xx,
        # 401 after a credential change, a redirect) may succeed later, so the job keeps
        # the message.
        if status == 400:
            raise SmsRejected(reason)
        raise SmsError(reason, retry_after=retry_after)

    def signed_by_twilio(self, url: str, params: Iterable[tuple[str, str]], signature: str) -> bool:
        """Whether ``signature`` (the ``X-Twilio-Signature`` header) is Twilio's for a
        form-encoded POST of ``params`` to ``url``: base64 of the HMAC-SHA1, keyed with the
        Auth Token, of the URL followed by every parameter's name and value, sorted by name
        (Twilio's "Secure webhooks" documentation). Twilio signs an https URL with the
        default port (``:443``) or without it, not always alike: either spelling is
        accepted, as Twilio's own libraries do."""
        if not self.signing_key or not signature:
            return False
        body = "".join(name + value for name, value in sorted(params))
        # Compared as bytes: compare_digest raises on a str with non-ASCII characters, which
        # anyone can put in the header.
        given = signature.strip().encode()
        key = self.signing_key.encode()
        expected = [
            base64.b64encode(hmac.new(key, (spelling + body).encode(), hashlib.sha1).digest())
            for spelling in _port_spellings(url)
        ]
        return any([hmac.compare_digest(each, given) for each in expected])


def _port_spellings(url: str) -> list[str]:
    """``url`` as given and with its scheme's default port written or left out (another
    port is another address)."""
    split = urlsplit(url)
    default = 443 if split.scheme == "https" else 80
    try:
        port = split.port
    except ValueError:
        return [url]
    if port is None:
        return [url, split._replace(netloc=f"{split.netloc}:{default}").geturl()]
    if port == default:
        return [url, split._replace(netloc=split.netloc.rsplit(":", 1)[0]).geturl()]
    return [url]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would follow a redirect of the POST as a GET to any address, plain http
    included, with the Authorization header: the credentials would go wherever it points.
    Twilio's API does not redirect; a redirect is answered as the error it is."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (RFC 9110: a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²", a digit to str.isdigit but no number
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def _json_object(body: bytes) -> dict[str, object]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_sms_url(url: str) -> SmsBackend:
    """Read ``PLI_SMS_URL``. Errors never repeat the URL: it may hold a secret."""
    url = (url or "").strip()
    scheme, separator, _rest = url.partition("://")
    if not separator:
        raise SmsConfigError(_EXPECTED)
    scheme = scheme.lower()
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced IPv6 bracket; its message would be a traceback
        raise SmsConfigError(f"PLI_SMS_URL {scheme}:// has an invalid host (an unclosed [ or ])") from None
    if scheme == "file":
        if parts.netloc or parts.query or parts.fragment:
            raise SmsConfigError("PLI_SMS_URL file URLs need an absolute directory with three slashes: file:///dir")
        directory = unquote(parts.path)
        if not directory.startswith("/") or directory == "/":
            raise SmsConfigError("PLI_SMS_URL file:/// needs an absolute directory, e.g. file:///var/lib/pli/sms")
        return FileBackend(Path(directory))
    if scheme == "twilio":
        return _parse_twilio(parts)
    raise SmsConfigError(f"{_EXPECTED}; the scheme {scheme!r} is not supported")


_DOCUMENTED_PLACEHOLDERS = frozenset({"ACCOUNT_SID", "AUTH_TOKEN", "API_KEY_SID", "API_KEY_SECRET", "SECRET"})
# Twilio's alphanumeric sender ids: up to 11 letters, digits and spaces, at least one letter.
_ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")


def _check_sender(sender: str) -> None:
    """Refused at start-up rather than by Twilio for every SMS: a number not in E.164, or
    an alphanumeric sender id longer than the 11 characters phones show."""
    if sender.startswith("+"):
        if not re.fullmatch(r"\+[1-9][0-9]{7,14}", sender):
            raise SmsConfigError(f"PLI_SMS_URL from={sender}: a number is written in E.164, e.g. +33700000000")
    elif sender.isdigit():
        raise SmsConfigError(f"PLI_SMS_URL from={sender}: write the number in E.164 (+33…), not as dialled")
    elif not _ALPHANUMERIC_SENDER.fullmatch(sender):
        raise SmsConfigError(
            f"PLI_SMS_URL from={sender}: an alphanumeric sender id has at most 11 letters, digits or spaces"
        )


def _parse_twilio(split: SplitResult) -> TwilioBackend:
    if split.fragment or split.path not in ("", "/"):
        raise SmsConfigError("PLI_SMS_URL twilio:// takes no path or fragment")
    username = unquote(split.username or "")
    password = unquote(split.password or "")
    if not username or not password:
        raise SmsConfigError("PLI_SMS_URL twilio:// needs ACCOUNT_SID:AUTH_TOKEN (or API_KEY_SID:SECRET) before the @")
    # RFC 3986, not HTML forms: "+" is a plus. Read as a space, "?from=+33700000000" (the
    # E.164 number the documentation asks for) sent From 33700000000, which Twilio refuses
    # for good. A space is written %20.
    query = parse_qs(split.query.replace("+", "%2B"), keep_blank_values=True)
    allowed = {"from", "messaging_service_sid", "account_sid", "endpoint", "auth_token"}
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise SmsConfigError(f"PLI_SMS_URL twilio:// has unknown parameters: {', '.join(unknown)}")
    single = {name: values[-1].strip() for name, values in query.items()}
    sender = single.get("from", "")
    service = single.get("messaging_service_sid", "")
    if not sender and not service:
        raise SmsConfigError("PLI_SMS_URL twilio:// needs ?from=SENDER or ?messaging_service_sid=MG…")
    if {username, password} & _DOCUMENTED_PLACEHOLDERS:
        raise SmsConfigError(
            "PLI_SMS_URL twilio:// still holds the documentation's placeholders (ACCOUNT_SID:AUTH_TOKEN): "
            "put the Account SID and Auth Token of the Twilio console there"
        )
    if sender:
        _check_sender(sender)
    account_sid = single.get("account_sid") or username
    if not account_sid.startswith("AC"):
        raise SmsConfigError("PLI_SMS_URL twilio:// needs the Account SID (AC…) as user name or ?account_sid=AC…")
    # Twilio signs its requests with the account's Auth Token: the password when the user
    # name is the Account SID; with an API key, only if given as auth_token.
    signing_key = single.get("auth_token") or (password if username == account_sid else "")
    try:
        split.port  # noqa: B018 - raises for a port that is no number or out of range
    except ValueError:
        raise SmsConfigError("PLI_SMS_URL twilio:// has an invalid port") from None
    # The host as written, with its port: a port given here was dropped, and the requests
    # went to 443 whatever the URL said.
    host = split.netloc.rpartition("@")[2] or "api.twilio.com"
    endpoint = single.get("endpoint") or f"https://{host}"
    try:
        target = urlsplit(endpoint)
        target.port  # noqa: B018 - as above
    except ValueError:
        # Accepted before, it failed every SMS at send time instead of stopping Pli here.
        raise SmsConfigError("PLI_SMS_URL endpoint has an invalid host or port") from None
    if (
        target.scheme not in ("http", "https")
        or not target.hostname
        or target.path not in ("", "/")
        or target.username is not None
        or target.password is not None
    ):
        raise SmsConfigError("PLI_SMS_URL endpoint must be a base URL such as https://api.twilio.com")
    if target.scheme == "http" and not _is_loopback(target.hostname):
        raise SmsConfigError("PLI_SMS_URL endpoint may use plain http only on a loopback address")
    return TwilioBackend(
        username=username,
        password=password,
        account_sid=account_sid,
        sender=sender,
        messaging_service_sid=service,
        endpoint=f"{target.scheme}://{target.netloc}",
        signing_key=signing_key,
    )


# -- sending ---------------------------------------------------------------------------------

_backends: dict[tuple[str, str], SmsBackend] = {}

# Where Twilio posts delivery reports, under PLI_PUBLIC_URL (pli.sharing.urls).
TWILIO_STATUS_PATH = "/hooks/sms/twilio"


def get_backend() -> SmsBackend:
    """The backend of the configured ``PLI_SMS_URL`` (``settings.PLI.sms_url``).

    Twilio is asked for delivery reports when it can reach Pli and Pli can check them: a
    public https URL (Twilio calls no other) and the Auth Token known."""
    from django.conf import settings

    url: str = settings.PLI_SMS_URL
    public_url: str = settings.PUBLIC_URL
    backend = _backends.get((url, public_url))
    if backend is None:
        backend = parse_sms_url(url)
        if isinstance(backend, TwilioBackend) and backend.signing_key and public_url.startswith("https://"):
            backend = dataclasses.replace(backend, status_callback=public_url.rstrip("/") + TWILIO_STATUS_PATH)
        _backends[(url, public_url)] = backend
    return backend


def allowed_regions() -> tuple[str, ...]:
    from django.conf import settings

    regions: tuple[str, ...] = settings.PLI_SMS_ALLOWED_REGIONS
    return regions


def send_sms(to: str, text: str, reference: str = "") -> str:
    """Send one SMS now; return the provider's id. Raises :class:`SmsError` on failure.
    ``reference``: Pli's id of the message, given back with its delivery reports."""
    number = normalise_mobile(to, allowed_regions())
    if not text or len(text) > MAX_TEXT_LENGTH:
        raise SmsRejected("bad_text")
    return get_backend().send(number, text, reference)
