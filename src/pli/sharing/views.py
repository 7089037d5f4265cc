"""The practitioner's pages: list of shares, new share, one share and its actions."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.core.paginator import Paginator
from django.db import DatabaseError, transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, ngettext
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from pli.accounts import services as accounts
from pli.accounts.models import Mailbox, User
from pli.audit import services as audit
from pli.blobs import BlobNotFound
from pli.core import storage
from pli.core.forms import SubmissionField, focus_first_error, new_submission
from pli.core.sizes import limit_size
from pli.core.uploads import DropFiles
from pli.core.views import content_unavailable
from pli.messaging import search_links
from pli.messaging import services as messaging
from pli.messaging.models import Attachment, Message
from pli.messaging.views import UPLOAD_HEADER
from pli.notify.sms import display_number
from pli.sharing import mailbox, notifications, services
from pli.sharing.forms import (
    NO_DOCUMENT_NOR_MESSAGE,
    NOT_YOUR_MAILBOX,
    CorrectionForm,
    PageShareForm,
    ShareFilterForm,
    sender_error,
)
from pli.sharing.models import Channel, PatientShare, ShareNotification, Status
from pli.sharing.uploads import (
    DOCUMENTS_FIELD,
    UploadBatch,
    UploadRejected,
    document_rules,
    empty_file_message,
    install,
    pending_files,
    texts_read,
)

PAGE_SIZE = 50


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - LoginRequiredMiddleware guarantees it
    return user


def _error_text(code: str) -> str:
    texts = {
        "revoked": _("This share has been revoked."),
        "expired": _("This share has expired."),
        "not_locked": _("This share is not locked."),
        "locked": _("This share is locked: unlock it first."),
        "no_contact": _("Give the patient's mobile number or e-mail address (or both)."),
        "birth_date_mismatch": _("This birth date does not match the INS (its year and month of birth): check both."),
        "no_replies": _("This share does not take replies from the patient."),
    }
    return texts.get(code, _("This action is not possible."))


# The search's sealed link (pli.messaging.search_links) is bound to the user and to this
# in place of a mailbox.
_SEARCH_SCOPE = "shares"


@require_http_methods(["GET", "POST"])
def share_list(request: HttpRequest) -> HttpResponse:
    """The list, and its search. A search is posted and answered with a redirect to a link
    holding its words sealed, as the mailbox's search is (a patient's name must not sit in
    URLs, the history or logs); a status alone may be a plain link (``?status=locked``)."""
    user = _user(request)
    if request.method == "POST":
        form = _filter_form(request, request.POST)
        if not form.is_valid():
            return _list_page(request, form, status=400)
        given = {name: str(value) for name, value in form.cleaned_data.items() if value}
        if not given.get("q"):
            target = reverse("sharing:list")
            return HttpResponseRedirect(f"{target}?{urlencode(given)}" if given else target, status=303)
        token = search_links.seal(user.pk, _SEARCH_SCOPE, given)
        return HttpResponseRedirect(f"{reverse('sharing:list')}?s={token}", status=303)
    token = request.GET.get("s", "")
    if token:
        fields = search_links.unseal(user.pk, _SEARCH_SCOPE, token)
        if fields is None:
            messages.info(request, _("That search link is no longer valid: search again."))
            return HttpResponseRedirect(reverse("sharing:list"), status=303)
    else:
        fields = {name: request.GET[name] for name in _PLAIN_FILTERS if request.GET.get(name)} or None
    form = _filter_form(request, fields)
    if form.is_bound and not form.is_valid():
        return _list_page(request, form, status=400)
    return _list_page(request, form, search_token=token)


# What the list may be filtered on in a plain link (``?status=locked&sender=…``); a patient's
# name only ever in a sealed one.
_PLAIN_FILTERS = ("status", "sender")


def _filter_form(request: HttpRequest, data: Mapping[str, Any] | None) -> ShareFilterForm:
    return ShareFilterForm(data, mailboxes=accounts.mailbox_list(_user(request))).for_page()


def _list_page(request: HttpRequest, form: ShareFilterForm, status: int = 200, search_token: str = "") -> HttpResponse:
    shares = services.shares_for(_user(request)).select_related("reply_mailbox").order_by("-created_at")
    now = timezone.now()
    filtering = form.is_bound and form.is_valid() and any(form.cleaned_data.values())
    if status != 200:
        shares = shares.none()
    elif filtering:
        data = form.cleaned_data
        shares = services.filter_shares(shares, data["q"], data["status"], now, form.sender_mailbox)
    page = Paginator(shares, PAGE_SIZE).get_page(request.GET.get("page"))
    shares_on_page = list(page.object_list)
    unreached = services.undelivered(s.pk for s in shares_on_page)
    answered = mailbox.replied(s.pk for s in shares_on_page if s.allow_reply)
    rows = [
        (share, share.effective_status(now), unreached.get(share.pk, ""), share.pk in answered)
        for share in shares_on_page
    ]
    # The list names the patients: a read, recorded like a mailbox's folder list.
    audit.record(
        "share.list",
        actor=_user(request),
        target=_user(request),
        request=request,
        details={"page": page.number, "count": len(rows), "search": bool(filtering)},
    )
    # What the pager's links carry to keep the search: the sealed link, or the status.
    if search_token:
        keep = f"s={search_token}&"
    elif filtering:
        keep = urlencode({name: form.cleaned_data[name] for name in _PLAIN_FILTERS if form.cleaned_data.get(name)})
        keep = f"{keep}&" if keep else ""
    else:
        keep = ""
    context = {
        "page": page,
        "rows": rows,
        "form": form,
        "filtering": filtering,
        "keep": keep,
        "show_sender": "sender" in form.fields,
    }
    return render(request, "sharing/list.html", context, status=status)


_SOURCE_GONE = gettext_noop("This message was deleted in the meantime: its attachments can no longer be sent.")


class _SourceGone(Exception):
    """The message a share was being made from is out of reach since its page was opened."""


def _source_attachments(request: HttpRequest, source: str | None) -> tuple[uuid.UUID | None, list[Attachment]]:
    if not source:
        return None, []
    try:
        message_id = uuid.UUID(source)
        return message_id, mailbox.received_attachments(_user(request), message_id)
    except ValueError:
        raise Http404 from None
    except messaging.NotVisible:
        # A message deleted for good is no refused access; one that exists is, either way.
        if Message.objects.filter(pk=message_id).exists():
            messaging.record_denied(_user(request), request, ("messaging.message", message_id), "share")
        if request.method == "POST":
            # Sent from the page, which showed the message: most likely deleted for good
            # since (by a colleague, from the trash). Said with what was typed, not a 404;
            # the same for any message out of reach, so the answer tells nothing of its id.
            raise _SourceGone from None
        raise Http404 from None


def _new_page(
    request: HttpRequest,
    form: PageShareForm,
    attachments: list[Attachment],
    source: uuid.UUID | None,
    status: int = 200,
    documents_error: str = "",
) -> HttpResponse:
    rules = document_rules()
    choose_sender = form.offer_mailboxes(accounts.mailbox_list(_user(request)))
    focus_first_error(form)
    chosen = set(request.POST.getlist("attachments")) if request.method == "POST" else {str(a.pk) for a in attachments}
    context = {
        "form": form,
        "attachments": attachments,
        "chosen": chosen,
        "source": source,
        "documents_error": documents_error,
        "page_error": bool(documents_error),
        "limits": ngettext(
            "Up to %(count)d file, %(size)s at most.", "Up to %(count)d files, %(size)s each at most.", rules.max_files
        )
        % {"count": rules.max_files, "size": limit_size(rules.max_file_bytes)},
        # For the page's script, which checks the documents as they are chosen, in the
        # server's words (see _over_limits and the upload handler).
        "document_rules": rules,
        "document_too_many": rules.too_many(rules),
        "document_too_large": rules.too_large(rules, False),
        "document_too_large_total": rules.too_large(rules, True),
        "document_empty": empty_file_message(),
        "default_days": services.default_expiry_days(_user(request)),
        "answering": _answering(request) or "",
        "choose_sender": choose_sender,
    }
    return render(request, "sharing/new.html", context, status=status)


def _answering(request: HttpRequest) -> uuid.UUID | None:
    """The patient's message this share answers (« Répondre au patient »), if any: once
    the share is made, the message is answered for the team to see."""
    value = (request.POST if request.method == "POST" else request.GET).get("answering", "")
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


@csrf_exempt  # checked by _create, once the encrypting upload handler is in place
@require_http_methods(["GET", "POST"])
def new_share(request: HttpRequest) -> HttpResponse:
    try:
        source, attachments = _source_attachments(request, request.GET.get("message"))
    except _SourceGone:
        # Read (before the CSRF check reads it) by a handler that keeps nothing: the files
        # sent are dropped, never held or written out in clear; the texts come back.
        request.upload_handlers = [DropFiles(request)]
        return _source_gone(request)
    if request.method == "GET":
        return _get_new(request, attachments, source)
    rules = document_rules()
    with UploadBatch(rules.store) as batch:
        install(request, batch, rules)
        try:
            request.POST  # noqa: B018 - parse (and encrypt) the upload now, inside the batch
        except UploadRejected as exc:
            # What was typed stays (the documents must be chosen again).
            typed = texts_read(request)
            initial = {"expires_in_days": services.default_expiry_days(_user(request))}
            initial |= {name: value for name, value in typed.items() if name in PageShareForm.base_fields}
            form = PageShareForm(initial=initial)
            if exc.field not in form.fields:
                return _new_page(request, form, attachments, source, status=exc.status, documents_error=exc.message)
            # A text field refused as the body streamed in (far too long): said next to it.
            form.cleaned_data = {}
            form.add_error(exc.field, exc.message)
            return _new_page(request, form, attachments, source, status=exc.status)
        except (RequestDataTooBig, TooManyFieldsSent, MultiPartParserError, SuspiciousOperation):
            error = _("The form could not be read; please send it again.")
            return _new_page(request, PageShareForm(), attachments, source, status=400, documents_error=error)
        except OSError as exc:
            if not storage.is_full(exc):
                raise
            # No room for the documents: the form again, as typed.
            storage.log_full(exc)
            request._mark_post_parse_error()  # type: ignore[attr-defined]
            initial = {"expires_in_days": services.default_expiry_days(_user(request))}
            initial |= {name: value for name, value in texts_read(request).items() if name in PageShareForm.base_fields}
            return _new_page(
                request,
                PageShareForm(initial=initial),
                attachments,
                source,
                status=storage.INSUFFICIENT_STORAGE,
                documents_error=storage.message(),
            )
        return _create(request, batch, attachments, source)


@csrf_protect
def _source_gone(request: HttpRequest) -> HttpResponse:
    try:
        form = PageShareForm(request.POST)
    except (RequestDataTooBig, TooManyFieldsSent, MultiPartParserError, SuspiciousOperation):
        form = PageShareForm()
    form.is_valid()
    return _new_page(request, form, [], None, status=400, documents_error=_(_SOURCE_GONE))


@csrf_protect
def _get_new(request: HttpRequest, attachments: list[Attachment], source: uuid.UUID | None) -> HttpResponse:
    # The organisation's default, visible and editable where it applies.
    user = _user(request)
    initial: dict[str, object] = {"expires_in_days": services.default_expiry_days(user)}
    mailboxes = accounts.mailbox_list(user)
    # Sent from the mailbox the practitioner was working in: the one the patient's reply came
    # to, the one holding the letter whose documents go on; their own otherwise.
    usual: list[uuid.UUID | None] = []
    earlier = request.GET.get("patient_of")
    if earlier:
        # Answering a patient who replied through a share: a new share to the same person.
        try:
            share = _share_or_404(request, uuid.UUID(earlier))
        except ValueError:
            raise Http404 from None
        audit.record("share.read", actor=_user(request), target=share, request=request)
        usual.append(share.reply_mailbox_id)
        initial |= {
            "patient_family_name": share.patient_family_name,
            "patient_given_name": share.patient_given_name,
            "patient_birth_date": share.patient_birth_date.strftime("%d/%m/%Y"),
            "patient_ins": share.patient_ins or "",
            "patient_mobile": display_number(share.patient_mobile) if share.patient_mobile else "",
            "patient_email": share.patient_email or "",
            "allow_reply": share.allow_reply,
        }
    elif source is not None:
        copies = messaging.visible_copies(user, source)
        usual += [c.mailbox_id for c in copies if c.mailbox.kind == Mailbox.Kind.PERSONAL]
        usual += [c.mailbox_id for c in copies]
        # From a message about a patient: the identity its banner shows, rather than typed
        # again (a mistyped birth date would lock the patient out).
        message = messaging.visible_message(_user(request), source)
        patient = message.patient or {}
        if patient.get("family_name"):
            audit.record("message.read", actor=_user(request), target=message, request=request)
            birth = patient.get("birth_date") or ""
            initial |= {
                "patient_family_name": patient["family_name"],
                "patient_given_name": patient.get("given_names", ""),
                "patient_birth_date": datetime.date.fromisoformat(birth).strftime("%d/%m/%Y") if birth else "",
                "patient_ins": patient.get("ins", ""),
            }
    chosen = [m for pk in usual for m in mailboxes if m.pk == pk] + mailboxes
    if chosen:
        initial["sender"] = chosen[0].address
    return _new_page(request, PageShareForm(initial=initial), attachments, source)


@csrf_protect
def _create(
    request: HttpRequest, batch: UploadBatch, attachments: list[Attachment], source: uuid.UUID | None
) -> HttpResponse:
    form = PageShareForm(request.POST)
    uploads = pending_files(request.FILES, DOCUMENTS_FIELD)
    chosen = set(request.POST.getlist("attachments"))
    forwarded = [a for a in attachments if str(a.pk) in chosen]
    valid = form.is_valid()
    if "sender" not in form.errors and (error := sender_error(_user(request), form)):
        form.add_error("sender", error)
        valid = False
    if not uploads and not forwarded and not request.POST.get("message", "").strip():
        return _new_page(request, form, attachments, source, status=400, documents_error=str(NO_DOCUMENT_NOR_MESSAGE))
    if valid and (other := mailbox.other_patient(forwarded, form.cleaned_data.get("patient_ins") or "")):
        form.add_error("patient_ins", other)
        valid = False
    if not valid:
        return _new_page(request, form, attachments, source, status=400)
    over = mailbox.over_limits(uploads, forwarded)
    if over:
        return _new_page(request, form, attachments, source, status=400, documents_error=over)
    try:
        copies = mailbox.copy_attachments(forwarded)
        batch.pending.extend(copies)
        answering, now = _answering(request), timezone.now()
        share = services.create_share(
            _user(request),
            form.share_input(),
            [*uploads, *copies],
            request=request,
            now=now,
            source_message_id=source,
            on_created=(lambda _id: messaging.mark_answered(_user(request), answering, now)) if answering else None,
        )
    except services.AlreadyCreated as exc:
        # The same form sent twice (a double click): the share it made, nothing sent again;
        # this request's documents are discarded with its batch.
        return _created(request, exc.share)
    except BlobNotFound:
        # Only a deletion for good removes a stored attachment: the message went from the
        # trash while this request ran.
        return _new_page(request, form, [], None, status=400, documents_error=_(_SOURCE_GONE))
    except messaging.ContentUnavailable:
        return content_unavailable(request)
    except services.ShareError as exc:
        if exc.code == "sender":
            # Taken out of the mailbox since the check above.
            form.add_error("sender", str(NOT_YOUR_MAILBOX))
            return _new_page(request, form, attachments, source, status=400)
        if exc.code != "upload_expired":
            raise
        error = _("Sending the files took too long; please send them again.")
        return _new_page(request, form, attachments, source, status=400, documents_error=error)
    except (OSError, DatabaseError) as exc:
        if not storage.is_full(exc):
            raise
        storage.log_full(exc)
        return _new_page(
            request, form, attachments, source, status=storage.INSUFFICIENT_STORAGE, documents_error=storage.message()
        )
    batch.keep()
    return _created(request, share)


def _created(request: HttpRequest, share: PatientShare) -> HttpResponse:
    messages.success(request, _("The share is created; the patient is being notified."))
    location = reverse("sharing:detail", args=[share.pk])
    if request.headers.get(UPLOAD_HEADER):
        # The page's script sent it (with a progress bar): it follows the location itself.
        return JsonResponse({"location": location}, status=201)
    return HttpResponseRedirect(location, status=303)


def _share_or_404(request: HttpRequest, share_id: uuid.UUID) -> PatientShare:
    share = services.shares_for(_user(request)).filter(pk=share_id).first()
    if share is None:
        raise Http404
    return share


@require_GET
def share_detail(request: HttpRequest, share_id: uuid.UUID) -> HttpResponse:
    return _detail_page(request, _share_or_404(request, share_id))


# The latest events the share's page lists: a share's whole life is some twenty; a link
# used again and again (thousands of downloads) would make the page as long.
HISTORY_SHOWN = 200


def _detail_page(
    request: HttpRequest, share: PatientShare, correction_form: CorrectionForm | None = None, status: int = 200
) -> HttpResponse:
    # The page shows who the patient is and how to reach them: a read of health data.
    audit.record("share.read", actor=_user(request), target=share, request=request)
    now = timezone.now()
    documents = list(share.documents.select_related("data_key"))
    # The audit names a document by id only (no health data there); the page, like the
    # patient's, shows which one was opened.
    names = {str(d.pk): d.name for d in documents}
    sent = list(share.notifications.defer("recipient", "subject", "text", "html"))
    events, earlier = services.latest_events(share, HISTORY_SHOWN)
    actors = _actor_names(events)
    replies = list(share.replies.all())
    context = {
        "share": share,
        "status": share.effective_status(now),
        "documents": documents,
        "notifications": sent,
        # From every failure, however far back the history shown goes.
        "failures": _failed_channels(share, sent, services.events(share, ("share.notification_failed",))),
        # Each with who in the team did it (revoked, unlocked, sent a new link): « déverrouillé »
        # alone did not say.
        "events": [
            (event, name, repeats, actors.get(event.actor_id, ""))
            for event, name, repeats in _collapse_retries(
                [(e, names.get(str(e.details.get("document", "")), "")) for e in events]
            )
        ],
        "earlier_events": earlier,
        "replies": replies,
        # A reply deleted for good from the mailbox opens nothing: its link would lead to a
        # "not found", recorded as an access refused to the practitioner.
        "readable_replies": messaging.visible_message_ids(_user(request), [r.message_id for r in replies]),
        # Once its author has left the organisation, the patient can no longer answer, and the
        # replies already sent are in the author's mailbox, which the administrator now
        # looking after the share cannot open.
        "replies_open": services.replies_open(share),
        # Sent from a shared mailbox: the team's share, its replies in the team's mailbox.
        "team": services.team_mailbox(share),
        # An administrator looking after a share of someone who has left: whose it is.
        "is_author": share.created_by_id == _user(request).pk,
        "Status": Status,
        "mobile": display_number(share.patient_mobile) if share.patient_mobile else "",
        "undelivered": services.undelivered([share.pk]).get(share.pk, ""),
        "correction_form": correction_form or _correction_form(share),
        # New with each page shown: a button of this page sent twice acts once (_action).
        "submission": new_submission(),
    }
    return render(request, "sharing/detail.html", context, status=status)


def _correction_form(share: PatientShare) -> CorrectionForm:
    """The patient's birth date and contacts as the practitioner typed them, to correct."""
    mobile = display_number(share.patient_mobile) if share.patient_mobile else ""
    initial = {
        "patient_birth_date": share.patient_birth_date.strftime("%d/%m/%Y"),
        "patient_mobile": mobile,
        "patient_email": share.patient_email or "",
    }
    return CorrectionForm(initial=initial)


def _failed_channels(
    share: PatientShare, sent: list[ShareNotification], events: list[services.ShareEvent]
) -> list[tuple[str, str]]:
    """Each of the patient's channels whose latest link (or reminder) failed for good, with
    why (a category of the reason, from the failure's event): what the practitioner must
    fix or do. A contact removed since is no longer a channel."""
    links = (ShareNotification.Kind.LINK, ShareNotification.Kind.REMINDER)
    channels: dict[str, str | None] = {Channel.EMAIL: share.patient_email, Channel.SMS: share.patient_mobile}
    latest = {n.channel: n for n in sent if n.kind in links and channels.get(n.channel)}
    failures = []
    for channel, notification in latest.items():
        if notification.state != ShareNotification.State.FAILED:
            continue
        if notification.kind == ShareNotification.Kind.REMINDER and _link_delivered_before(sent, notification):
            # The number works (the link's SMS reached the phone, often switched off since):
            # not "refused", and the patient has the link.
            failures.append((channel, "reminder_undelivered"))
            continue
        # The failure of that very notification (a late report about an earlier link, to a
        # number corrected since, must not speak for it); events recorded before they named
        # their notification: the channel's latest.
        why = [
            e.failure
            for e in events
            if e.failure and e.details.get("final") and e.details.get("channel") == channel
            if e.details.get("kind") in links
            if e.details.get("notification") in (None, str(notification.pk))
        ]
        failures.append((channel, why[-1] if why else notifications.PROVIDER_UNAVAILABLE))
    return failures


def _link_delivered_before(sent: list[ShareNotification], reminder: ShareNotification) -> bool:
    """Whether the provider reported delivered the link SMS that ``reminder`` (an SMS)
    follows: the latest link by SMS before it, to the same number (a correction of the
    number sends a new link)."""
    links = [
        n
        for n in sent
        if n.channel == reminder.channel
        and n.kind == ShareNotification.Kind.LINK
        and n.created_at <= reminder.created_at
        and n.pk != reminder.pk
    ]
    return bool(links) and links[-1].delivered_at is not None


def _is_retry(event: services.ShareEvent) -> bool:
    return event.type == "notification_failed" and not event.details.get("final")


def _actor_names(events: list[services.ShareEvent]) -> dict[str, str]:
    ids = {int(e.actor_id) for e in events if e.actor_id.isdigit()}
    return {str(user.pk): user.display_name for user in User.objects.filter(pk__in=ids)}


def _collapse_retries(
    events: list[tuple[services.ShareEvent, str]],
) -> list[tuple[services.ShareEvent, str, int]]:
    """The history with each run of « failed, will retry » of one notification shown once
    (the latest, with how many attempts): a provider down for a day is some thirty retries,
    which buried what the patient did."""
    shown: list[tuple[services.ShareEvent, str, int]] = []
    for event, name in events:
        if shown and _is_retry(event) and _is_retry(shown[-1][0]):
            before, now = shown[-1][0].details, event.details
            if (before.get("channel"), before.get("kind")) == (now.get("channel"), now.get("kind")):
                shown[-1] = (event, name, shown[-1][2] + 1)
                continue
        shown.append((event, name, 1))
    return shown


def _action(request: HttpRequest, share_id: uuid.UUID, action: str) -> HttpResponse:
    user = _user(request)
    functions: dict[str, tuple[Callable[..., PatientShare], str]] = {
        "revoke": (services.revoke, _("The link is revoked: the patient can no longer open it.")),
        "unlock": (services.unlock, _("The share is unlocked.")),
        "resend": (services.resend, _("A new link is being sent to the patient; the previous one no longer works.")),
        "close": (services.close_conversation, _("The conversation is closed.")),
    }
    function, done = functions[action]
    resending = action == "resend" or (action == "unlock" and bool(request.POST.get("resend")))
    corrections, corrected = None, ""
    if resending and request.POST.get("contacts"):
        # The patient's birth date or contacts corrected (mistyped) before the new link.
        share = _share_or_404(request, share_id)
        # Only what is sent changes: a page shown before the birth date could be corrected
        # sends none.
        form = CorrectionForm(request.POST, ins=share.patient_ins, only_given=True)
        if not form.is_valid():
            ended = share.effective_status(timezone.now())
            if ended in (Status.REVOKED, Status.EXPIRED):
                # The page no longer shows the form: what ended the share is the answer.
                messages.error(request, _error_text(ended))
                return HttpResponseRedirect(reverse("sharing:detail", args=[share_id]), status=303)
            focus_first_error(form)
            return _detail_page(request, share, form, status=400)
        corrections = form.corrections()
        current = {name: getattr(share, f"patient_{name}") for name in corrections}
        if corrections.get("birth_date") != current.get("birth_date"):
            corrected = _("The patient's birth date is corrected and a new link is being sent to them.")
        elif corrections != current:
            corrected = _("The patient's contact details are corrected and a new link is being sent to them.")
    unlock_and_resend = action == "unlock" and resending
    if unlock_and_resend:
        done = corrected or _("The share is unlocked and a new link is being sent to the patient.")
    elif corrected:
        done = corrected
    submission = SubmissionField().clean(request.POST.get("submission"))
    try:
        # Unlock-and-resend is one change: a refused resend leaves the share as it was.
        with transaction.atomic():
            # The same button sent twice (a double click) is done once: a second new link
            # would be a second SMS, and would end the first one.
            claim = f"{action}-resend" if unlock_and_resend else action
            if services.claim_action(user, share_id, claim, submission):
                options: dict[str, object] = {"corrections": corrections} if action == "resend" else {}
                if unlock_and_resend:
                    options = {"resend": True, "corrections": corrections}
                function(user, share_id, request=request, **options)
    except services.ShareError as exc:
        if exc.code == "not_found":
            raise Http404 from None
        messages.error(request, _error_text(exc.code))
    else:
        messages.success(request, done)
    return HttpResponseRedirect(reverse("sharing:detail", args=[share_id]), status=303)


@require_POST
def revoke(request: HttpRequest, share_id: uuid.UUID) -> HttpResponse:
    if request.POST.get("confirmed") != "1":
        # Sent without the page's script, which asks first: asked on a page of its own.
        share = _share_or_404(request, share_id)
        submission = SubmissionField().clean(request.POST.get("submission"))
        return render(request, "sharing/confirm_revoke.html", {"share_id": share.pk, "submission": submission})
    return _action(request, share_id, "revoke")


@require_POST
def unlock(request: HttpRequest, share_id: uuid.UUID) -> HttpResponse:
    return _action(request, share_id, "unlock")


@require_POST
def resend(request: HttpRequest, share_id: uuid.UUID) -> HttpResponse:
    return _action(request, share_id, "resend")


@require_POST
def close(request: HttpRequest, share_id: uuid.UUID) -> HttpResponse:
    return _action(request, share_id, "close")
