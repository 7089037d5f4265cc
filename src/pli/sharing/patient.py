"""The patient pages, ``/p/<token>…``: public (no professional login), mobile-first.

A GET never changes the share: mail scanners and link previews open links, and must not
use up attempts or codes. Every step is a POST. Proving identity takes the birth date,
then a one-time code; the patient's session then lives in a cookie of its own
(``pli_patient``, HttpOnly, SameSite=Strict, path ``/p/``) whose key is stored as a keyed
hash, bound to the share, and expires after 15 idle minutes.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db import DatabaseError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from pli.audit import services as audit
from pli.core import storage
from pli.core.forms import focus_first_error
from pli.core.sizes import limit_size
from pli.core.views import content_unavailable
from pli.notify.sms import display_number
from pli.sharing import services, tokens
from pli.sharing.forms import BirthDateForm, CodeForm, ReplyForm
from pli.sharing.mailbox import REPLY_MAX_FILE_BYTES, REPLY_MAX_FILES, reply_rules
from pli.sharing.models import Channel, PatientSession, PatientShare, Status
from pli.sharing.uploads import (
    REPLY_FILES_FIELD,
    REPLY_TYPES,
    UploadBatch,
    UploadRejected,
    install,
    pending_files,
    texts_read,
    wrong_type_message,
)

COOKIE = "pli_patient"
# Session keys kept in the cookie, one per share: the oldest is dropped past this.
KEYS_KEPT = 4
# Shown in the browser's own viewer, in a sandbox: no script, no form, no access to Pli.
INLINE_CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; object-src 'self'"
INLINE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp"})
# Unknown links per client address before we stop answering (and auditing) for a while.
UNKNOWN_LINK_LIMIT = 30
UNKNOWN_LINK_WINDOW = 600
# Steps that take only a POST: the language switch must not send a GET there (see _render).
_POST_ONLY = frozenset({"patient_new_code", "patient_reply", "patient_leave", "patient_alive"})
# Accesses listed on the documents page, the latest; the count of earlier ones is shown.
HISTORY_SHOWN = 50
# The id of the reply form's refusal message, which the field it concerns points to.
REPLY_ERROR_ID = "reply-error"


def _keys(request: HttpRequest) -> list[str]:
    """The session keys the browser holds, the latest first: one per share it was let into
    (a patient may have documents from two practices open at once). Anything else in the
    cookie is ignored, and so never written back: a character a header cannot carry would
    make every step fail, and junk would take the place of a share's key."""
    pieces = request.COOKIES.get(COOKIE, "").split(".")
    return [key for key in pieces if tokens.plausible_session_key(key)][:KEYS_KEPT]


def _key(request: HttpRequest, share: PatientShare) -> str | None:
    keys = _keys(request)
    if len(keys) <= 1:
        return keys[0] if keys else None  # checked by each step, as any key is
    return services.live_session_key(share, keys)


def _set_key(request: HttpRequest, response: HttpResponse, key: str, replacing: str | None = None) -> None:
    kept = [key, *(k for k in _keys(request) if k not in (key, replacing))][:KEYS_KEPT]
    _set_keys(response, kept)


def _set_keys(response: HttpResponse, keys: list[str]) -> None:
    if not keys:
        response.delete_cookie(COOKIE, path="/p/", samesite="Strict")
        return
    response.set_cookie(
        COOKIE, ".".join(keys), path="/p/", httponly=True, secure=settings.SESSION_COOKIE_SECURE, samesite="Strict"
    )


def _url(name: str, token: str, *args: Any) -> str:
    return reverse(f"sharing:{name}", args=[token, *args])


def _redirect(name: str, token: str, query: str = "") -> HttpResponseRedirect:
    # 303: the browser follows with a GET, so reloading never re-submits a step.
    return HttpResponseRedirect(_url(name, token) + query, status=303)


def _render(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    for value in context.values():
        if isinstance(value, forms.BaseForm):
            focus_first_error(value)
    # The language switch comes back to the page's address with a GET, which the steps that
    # take only a POST refuse (405, a blank page): from those, back to the link itself,
    # which leads to wherever the patient now is (documents, code, birth date, "locked").
    match = request.resolver_match
    if match is not None and match.url_name in _POST_ONLY and "token" in match.kwargs:
        context = {**context, "lang_next": _url("patient_landing", match.kwargs["token"])}
    # A page that answers a POST (a refused step, "locked", "you have left") is no-store: the
    # back button from the next step would show the browser's resubmission error instead.
    # Its history entry becomes the page's plain address (sharing/patient-history.js). Not
    # on the unknown-link pages, which must read the same whatever the method.
    if request.method == "POST" and template not in ("unknown.html", "too_many.html"):
        context = {**context, "history_url": context.get("lang_next") or request.get_full_path()}
    # The page's Referrer-Policy is the global "same-origin" (settings): the token in the
    # address never reaches another site, and Chromium still sends a real Origin with the
    # forms, which "no-referrer" would turn into "null" and the CSRF check would refuse.
    return render(request, f"sharing/patient/{template}", context, status=status)


def _sender(share: PatientShare) -> dict[str, Any]:
    organisation = share.organisation
    return {
        "share": share,
        "sender_name": share.sender_name,
        "organisation": organisation.name if organisation else "",
        "organisation_city": organisation.city if organisation else "",
        "organisation_phone": display_number(organisation.phone) if organisation and organisation.phone else "",
        "organisation_phone_uri": f"tel:{organisation.phone}" if organisation and organisation.phone else "",
    }


def _unknown(request: HttpRequest) -> HttpResponse:
    """A link that opens nothing: counted per address, audited, and answered like any other."""
    address = request.META.get("REMOTE_ADDR", "")
    bucket = f"pli:share-unknown:{address}"
    # The window opens with the first unknown link and ends UNKNOWN_LINK_WINDOW seconds later
    # whatever follows: its end is kept with the count, and the entry expires then.
    # (cache.incr stored the count again with the cache's default timeout, five minutes
    # from the last request, so the window never ended during a flood and ended early after.)
    now = time.time()
    entry = cache.get(bucket)
    if not isinstance(entry, tuple) or entry[0] <= now:
        entry = (now + UNKNOWN_LINK_WINDOW, 0)
    ends, count = entry[0], entry[1] + 1
    remaining = max(1, math.ceil(ends - now))
    cache.set(bucket, (ends, count), remaining)
    if count > UNKNOWN_LINK_LIMIT:
        refused = _render(request, "too_many.html", {}, status=429)
        refused["Retry-After"] = str(remaining)
        return refused
    audit.record(
        "share.access_denied",
        actor=services.PATIENT,
        request=request,
        outcome=audit.DENIED,
        details={"reason": "unknown_link", "method": request.method or ""},
    )
    return _render(request, "unknown.html", {}, status=404)


def _ended(request: HttpRequest, share: PatientShare, status: str) -> HttpResponse:
    if status == Status.LOCKED:
        return _render(request, "locked.html", _sender(share), status=403)
    return _render(request, "ended.html", {**_sender(share), "status": status}, status=410)


def _resolve(request: HttpRequest, token: str) -> tuple[PatientShare | None, HttpResponse | None]:
    share = services.find_share(token)
    if share is None:
        return None, _unknown(request)
    status = share.effective_status()
    if status in (Status.EXPIRED, Status.REVOKED, Status.LOCKED):
        return None, _ended(request, share, status)
    return share, None


def _landing_page(
    request: HttpRequest, share: PatientShare, token: str, form: BirthDateForm, status: int = 200, **extra: Any
) -> HttpResponse:
    context = {**_sender(share), "form": form, "token": token, **extra}
    return _render(request, "landing.html", context, status=status)


@login_not_required
@require_GET
def landing_with_slash(request: HttpRequest, token: str) -> HttpResponse:
    """The link with a « / » added after it (by a mail client, or copied so): it answered
    « Page introuvable », and the patient took the link for broken. Sent to the link itself,
    which says, as for any link, whether it is valid; nothing is read or changed here."""
    return HttpResponseRedirect(_url("patient_landing", token))


@login_not_required
@require_http_methods(["GET", "POST"])
def landing(request: HttpRequest, token: str) -> HttpResponse:
    share, refusal = _resolve(request, token)
    if share is None:
        assert refusal is not None  # noqa: S101 - _resolve returns one or the other
        return refusal
    key = _key(request, share)
    if request.method == "GET":
        session = services.find_session(share, key)
        if session is not None and session.stage == PatientSession.Stage.OPEN:
            return _redirect("patient_documents", token)
        if session is not None:  # the birth date is confirmed: back to the code
            return _redirect("patient_code", token)
        return _landing_page(request, share, token, BirthDateForm(), expired=request.GET.get("session") == "expired")
    form = BirthDateForm(request.POST)
    if not form.is_valid():
        return _landing_page(request, share, token, form, status=400)
    result = services.check_birth_date(share.pk, form.cleaned_data["birth_date"], session_key=key, request=request)
    if result.outcome == "open":
        return _redirect("patient_documents", token)
    if result.outcome == "ok":
        response = _redirect("patient_code", token, f"?sent={result.channel}")
        if result.session_key and result.session_key != key:
            _set_key(request, response, result.session_key)
        return response
    if result.outcome == "wrong":
        form.add_error("birth_date", _wrong_birth_date(result.attempts_left))
        return _landing_page(request, share, token, form, status=400)
    share.refresh_from_db()
    return _ended(request, share, result.outcome)


def _wrong_birth_date(left: int) -> str:
    return ngettext(
        "This birth date does not match. %(count)d attempt left before access is locked.",
        "This birth date does not match. %(count)d attempts left before access is locked.",
        left,
    ) % {"count": left}


def _code_page(
    request: HttpRequest, share: PatientShare, token: str, form: CodeForm, status: int = 200, **extra: Any
) -> HttpResponse:
    from pli.notify.sms import mask_number

    channels = services.code_channels(share)
    context = {
        **_sender(share),
        "form": form,
        "token": token,
        # In one piece on a narrow phone: « +33 6 •• •• •• » and « 78 » fell on two lines.
        "masked_mobile": mask_number(share.patient_mobile).replace(" ", "\u00a0") if share.patient_mobile else "",
        "has_email": Channel.EMAIL in channels,
        "has_mobile": Channel.SMS in channels,
        **extra,
    }
    return _render(request, "code.html", context, status=status)


def _sent_channel(request: HttpRequest, share: PatientShare) -> str:
    """The channel the current code went by: said in the address after sending it, else that
    of the code still valid (the link opened again from the e-mail, after a switch to it:
    « new code » then went back to SMS, and counted towards the hour's five)."""
    sent = request.GET.get("sent")
    if sent in Channel.values:
        return str(sent)
    return services.current_code_channel(share) or ""


@login_not_required
@require_http_methods(["GET", "POST"])
def code(request: HttpRequest, token: str) -> HttpResponse:
    share, refusal = _resolve(request, token)
    if share is None:
        assert refusal is not None  # noqa: S101
        return refusal
    key = _key(request, share)
    session = services.find_session(share, key)
    if session is not None and session.stage == PatientSession.Stage.OPEN:
        return _redirect("patient_documents", token)
    # Without a session, a code may still be the one that has just let this browser in, sent
    # again before the browser took the new key (a double tap): check_code decides. Any
    # other request without a session goes back to the birth date, as it always has.
    if session is None and (request.method == "GET" or not services.recently_opened(_keys(request))):
        return _redirect("patient_landing", token, "?session=expired")
    sent = _sent_channel(request, share)
    if request.method == "GET":
        return _code_page(request, share, token, CodeForm(), sent=sent, resend_error=_wait_text(request))
    form = CodeForm(request.POST)
    channel = {"sent": sent}
    if not form.is_valid():
        if session is None:
            return _redirect("patient_landing", token, "?session=expired")
        return _code_page(request, share, token, _without_code(form), status=400, **channel)
    result = services.check_code(
        share.pk, form.cleaned_data["code"], session_key=key, request=request, browser_keys=_keys(request)
    )
    if result.outcome in ("ok", "again"):
        opened = _redirect("patient_documents", token)
        if result.session_key is not None:
            _set_key(request, opened, result.session_key, replacing=result.replaces or key)
        return opened
    if result.outcome == "no_session":
        return _redirect("patient_landing", token, "?session=expired")
    if result.outcome in (Status.LOCKED, Status.EXPIRED, Status.REVOKED):
        share.refresh_from_db()
        return _ended(request, share, result.outcome)
    form.add_error("code", _code_error(result.outcome, result.attempts_left))
    return _code_page(request, share, token, _without_code(form), status=400, **channel)


def _wait_text(request: HttpRequest) -> str:
    """Why no new code was sent ("wait" set by new_code), or ""."""
    raw = request.GET.get("wait", "")
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) <= services.RESEND_COOLDOWN.total_seconds():
        return ""
    count = int(raw)
    return ngettext(
        "A code has just been sent: it can take a minute to arrive. You can ask for another in %(count)d second.",
        "A code has just been sent: it can take a minute to arrive. You can ask for another in %(count)d seconds.",
        count,
    ) % {"count": count}


def _without_code(form: CodeForm) -> CodeForm:
    """The refused form, its field emptied: the next code is typed, not corrected."""
    form.data = {**form.data, "code": ""}
    return form


def _code_error(outcome: str, left: int) -> str:
    if outcome == "code_expired":
        return _("This code has expired (codes are valid 10 minutes). Ask for a new code below.")
    if outcome in ("used", "retired", "no_code"):
        return _("This code is no longer valid: use the most recent code you received, or ask for a new one below.")
    return ngettext(
        "This is not the right code. %(count)d attempt left before access is locked.",
        "This is not the right code. %(count)d attempts left before access is locked.",
        left,
    ) % {"count": left}


@login_not_required
@require_POST
def new_code(request: HttpRequest, token: str) -> HttpResponse:
    share, refusal = _resolve(request, token)
    if share is None:
        assert refusal is not None  # noqa: S101
        return refusal
    channel = request.POST.get("channel") or None
    result = services.request_new_code(share.pk, session_key=_key(request, share), channel=channel, request=request)
    if result.outcome == "ok":
        return _redirect("patient_code", token, f"?sent={result.channel}")
    if result.outcome == "no_session":
        return _redirect("patient_landing", token, "?session=expired")
    if result.outcome == "too_soon":
        # Redirected like a sent code, so that reloading the page never posts again.
        return _redirect("patient_code", token, f"?sent={result.channel}&wait={result.wait_seconds}")
    share.refresh_from_db()
    return _ended(request, share, result.outcome)


def _open(request: HttpRequest, token: str) -> tuple[PatientShare | None, PatientSession | None, HttpResponse | None]:
    share, refusal = _resolve(request, token)
    if share is None:
        return None, None, refusal
    session = services.open_session(share, _key(request, share))
    if session is None:
        return share, None, _redirect("patient_landing", token, "?session=expired")
    return share, session, None


def _documents_page(
    request: HttpRequest, share: PatientShare, token: str, status: int = 200, **extra: Any
) -> HttpResponse:
    documents = list(share.documents.select_related("data_key"))
    history, earlier = services.patient_history(share, HISTORY_SHOWN)
    names = {str(d.pk): d.name for d in documents}
    reply_form = extra.pop("reply_form", None) or ReplyForm()
    rules = reply_rules()
    error_field = extra.pop("reply_error_field", "")
    if error_field == "text":
        # The refusal is the page's message, not the form's: the box points to it, as
        # Django's own field errors do, and takes the focus (the patient pages work without script).
        reply_form.fields["text"].widget.attrs.update(
            {"aria-invalid": "true", "aria-describedby": REPLY_ERROR_ID, "autofocus": True}
        )
    context = {
        **_sender(share),
        "token": token,
        "message": share.message or "",
        "documents": documents,
        "inline_types": INLINE_TYPES,
        "history": [(event, names.get(str(event.details.get("document", "")), "")) for event in history],
        "earlier_accesses": earlier,
        "can_reply": services.replies_open(share),
        "closed": share.closed_at is not None,
        # Allowed, not closed, yet refused: the practitioner has left the organisation.
        "replies_stopped": share.allow_reply,
        "reply_form": reply_form,
        "reply_error_field": error_field,
        "reply_max_files": REPLY_MAX_FILES,
        "reply_max_size": limit_size(REPLY_MAX_FILE_BYTES),
        # For the page's script, which checks the chosen files at once (sharing/patient-reply.js):
        # on a phone, a 15 MB photo would otherwise be sent whole before being refused.
        "reply_max_file_bytes": REPLY_MAX_FILE_BYTES,
        "reply_types": ",".join(REPLY_TYPES),
        "reply_too_many": rules.too_many(rules),
        "reply_too_large": rules.too_large(rules, False),
        "reply_wrong_type": wrong_type_message(),
        "idle_seconds": int(services.PATIENT_IDLE.total_seconds()),
        "replies": list(share.replies.all()),
        # A refused reply is the page's message, not a form error: the title says it too.
        "page_error": bool(extra.get("reply_error")),
        **extra,
    }
    return _render(request, "documents.html", context, status=status)


@login_not_required
@require_GET
def documents(request: HttpRequest, token: str) -> HttpResponse:
    share, session, refusal = _open(request, token)
    if refusal is not None:
        return refusal
    assert share is not None and session is not None  # noqa: S101
    services.record_documents_page(share, session, request)
    return _documents_page(request, share, token, replied=request.GET.get("replied") == "1")


def _document(request: HttpRequest, token: str, document_id: uuid.UUID, *, download: bool) -> HttpResponseBase:
    share, _session, refusal = _open(request, token)
    if refusal is not None:
        return refusal
    assert share is not None  # noqa: S101
    try:
        opened = services.open_document(
            share.pk, document_id, session_key=_key(request, share), download=download, request=request
        )
    except services.ContentUnavailable:
        return content_unavailable(request)
    if opened is None:
        raise Http404
    document, reader = opened
    content_type = document.content_type
    inline = not download and content_type in INLINE_TYPES
    response = StreamingHttpResponse(reader, content_type=content_type if inline else "application/octet-stream")
    response["Content-Length"] = str(document.size)
    response["Content-Disposition"] = content_disposition_header(not inline, document.name) or "attachment"
    response["Content-Security-Policy"] = INLINE_CSP
    response["X-Content-Type-Options"] = "nosniff"
    # A document has no form: a link inside it (a PDF's) sends no Referer at all.
    response["Referrer-Policy"] = "no-referrer"
    return response


@login_not_required
@require_GET
def view_document(request: HttpRequest, token: str, document_id: uuid.UUID) -> HttpResponseBase:
    return _document(request, token, document_id, download=False)


@login_not_required
@require_GET
def download_document(request: HttpRequest, token: str, document_id: uuid.UUID) -> HttpResponseBase:
    return _document(request, token, document_id, download=True)


@login_not_required
@require_POST
def keep_alive(request: HttpRequest, token: str) -> HttpResponse:
    """Posted by the reply form's script while the patient writes or picks files (nothing of
    what is written): that is activity, and a reply longer than the idle time to write must
    not be lost when it is sent. 204, or the refusal any step gets (the session has ended)."""
    _share, session, refusal = _open(request, token)
    if refusal is not None:
        return refusal
    assert session is not None  # noqa: S101
    services.touch_session(session)
    return HttpResponse(status=204)


@login_not_required
@csrf_exempt  # checked by _save_reply, once the encrypting upload handler is in place
@require_POST
def reply(request: HttpRequest, token: str) -> HttpResponse:
    share, session, refusal = _open(request, token)
    if refusal is not None:
        return refusal
    assert share is not None and session is not None  # noqa: S101
    # The reply's arrival is activity: files that take a while to arrive after 14 minutes of
    # writing (without the page's script, nothing kept the session alive) are not refused
    # once they have.
    services.touch_session(session)
    response = _reply(request, token, share)
    if not isinstance(response, HttpResponseRedirect):
        # Refused, the documents page is shown again: it lists them, so it is audited as
        # when it is first shown. On a full disk the audit may fail too: the storage
        # middleware's page (which lists nothing) is shown instead.
        services.record_documents_page(share, session, request)
    return response


def _reply(request: HttpRequest, token: str, share: PatientShare) -> HttpResponse:
    rules = reply_rules()
    with UploadBatch(rules.store) as batch:
        install(request, batch, rules)
        try:
            request.POST  # noqa: B018 - parse (and encrypt) the upload now, inside the batch
        except UploadRejected as exc:
            # What the patient wrote stays in the box (the files must be chosen again).
            typed = texts_read(request).get("text", "")
            form = ReplyForm(initial={"text": typed})
            return _documents_page(
                request,
                share,
                token,
                status=exc.status,
                reply_error=exc.message,
                reply_error_field=exc.field if exc.field in ("text", REPLY_FILES_FIELD) else "",
                reply_form=form,
            )
        except (RequestDataTooBig, TooManyFieldsSent, MultiPartParserError, SuspiciousOperation):
            return _documents_page(request, share, token, status=400, reply_error=_malformed())
        except OSError as exc:
            if not storage.is_full(exc):
                raise
            storage.log_full(exc)
            request._mark_post_parse_error()  # type: ignore[attr-defined]
            form = ReplyForm(initial={"text": texts_read(request).get("text", "")})
            return _no_room(request, share, token, form)
        return _save_reply(request, token, share, batch)


def _no_room(request: HttpRequest, share: PatientShare, token: str, form: ReplyForm) -> HttpResponse:
    """The disk is full (pli.core.storage): the page again, what the patient wrote kept."""
    return _documents_page(
        request,
        share,
        token,
        status=storage.INSUFFICIENT_STORAGE,
        reply_error=storage.patient_message(),
        reply_form=form,
    )


def _malformed() -> str:
    return _("The reply could not be read; please send it again.")


@csrf_protect
def _save_reply(request: HttpRequest, token: str, share: PatientShare, batch: UploadBatch) -> HttpResponse:
    form = ReplyForm(request.POST)
    files = pending_files(request.FILES, REPLY_FILES_FIELD)
    if not form.is_valid():
        if "submission" in form.errors:
            # Not the patient's doing (the page's hidden value was altered): a fresh form.
            fresh = ReplyForm(initial={"text": form.data.get("text", "")})
            return _documents_page(request, share, token, status=400, reply_form=fresh, reply_error=_malformed())
        return _documents_page(request, share, token, status=400, reply_form=form)
    try:
        _answer, created = services.reply(
            share.pk,
            form.cleaned_data["text"],
            files,
            session_key=_key(request, share),
            request=request,
            submission=form.cleaned_data["submission"],
        )
    except (OSError, DatabaseError) as exc:
        if not storage.is_full(exc):
            raise
        storage.log_full(exc)
        return _no_room(request, share, token, form)
    except services.ShareError as exc:
        if exc.code == "no_session":
            # Ended while the reply was on its way (a new link sent meanwhile, or idle too
            # long): the documents are not shown again; the patient confirms who they are.
            return _redirect("patient_landing", token, "?session=expired")
        messages = {
            "empty": _("Write a message or add a file."),
            "closed": _("This conversation is closed: replies are no longer accepted."),
            "upload_expired": _("Sending the files took too long; please send them again."),
            "too_many_replies": _(
                "You have sent many replies today: please try again tomorrow, or contact the practice directly."
            ),
        }
        return _documents_page(
            request,
            share,
            token,
            status=429 if exc.code == "too_many_replies" else 400,
            reply_form=form,
            reply_error=messages.get(exc.code, exc.message),
            reply_error_field={"empty": "text", "upload_expired": REPLY_FILES_FIELD}.get(exc.code, ""),
            # A file chosen answers it as well as a text typed (sharing/patient-reply.js).
            reply_error_empty=exc.code == "empty",
        )
    if created:
        batch.keep()
    return _redirect("patient_documents", token, "?replied=1")


@login_not_required
@require_POST
def leave(request: HttpRequest, token: str) -> HttpResponse:
    # Every share this browser was let into is closed, not only this one: « Quitter » on a
    # shared computer (a library, a relative's phone) must leave nothing open behind.
    services.end_sessions(_keys(request), timezone.now())
    response = _render(request, "left.html", {})
    _set_keys(response, [])
    return response
