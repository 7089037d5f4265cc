"""The web mailbox: folders, threads, compose, attachments. Thin: services do the work."""

from __future__ import annotations

import datetime
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import quote

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db import DatabaseError, transaction
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext_lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from pli.accounts.middleware import stored_deadline
from pli.accounts.models import Mailbox, User
from pli.audit import services as audit
from pli.blobs import ReadAhead
from pli.core import storage
from pli.core.forms import check_date_range, focus_first_error
from pli.core.sizes import limit_size
from pli.core.templatetags.pli_pages import UNDO_TAG_PREFIX
from pli.core.views import content_unavailable
from pli.messaging import search_links, services, uploads
from pli.messaging.context_processors import mail_nav
from pli.messaging.forms import BODY_MAX, SUBJECT_MAX, PageComposeForm, attachment_limits_text
from pli.messaging.models import Attachment, Folder, Message, Role
from pli.messaging.search import searchable
from pli.messaging.uploads import UploadRejected, UploadSession

FOLDERS = [Folder.INBOX, Folder.SENT, Folder.ARCHIVE, Folder.TRASH]
# Shown inline (browser viewer) rather than downloaded; never scripts: the response is
# also sandboxed by its Content-Security-Policy.
INLINE_CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; object-src 'self'"
UPLOAD_HEADER = "X-Pli-Upload"


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - LoginRequiredMiddleware guarantees it
    return user


def _mailbox_or_404(request: HttpRequest, mailbox_id: uuid.UUID) -> Mailbox:
    try:
        return services.mailbox_for(_user(request), mailbox_id)
    except services.NotVisible:
        services.record_denied(_user(request), request, ("accounts.mailbox", mailbox_id), "web")
        raise Http404 from None


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    mailboxes = services.mailbox_list(_user(request))
    if not mailboxes:
        return render(request, "messaging/no_mailbox.html")
    # The first that has something unread: a secretary's work arrives in the shared
    # mailbox, and she used to land on her own, empty one.
    counts = services.unread_counts(m.pk for m in mailboxes)
    mailbox = next((m for m in mailboxes if counts.get(m.pk)), mailboxes[0])
    return redirect("messaging:folder", mailbox_id=mailbox.pk, folder=Folder.INBOX)


def _name_recipients(items: list[Any]) -> None:
    """For the sender's own copies, say whom they went to (one query for the page)."""
    own = [item for item in items if item.role == Role.SENDER]
    if not own:
        return
    names: dict[uuid.UUID, list[str]] = {}
    for row in services.message_recipients_for(item.message_id for item in own):
        names.setdefault(row.message_id, []).append(row.mailbox.name)
    for item in own:
        item.recipient_names = ", ".join(names.get(item.message_id, []))


def _name_answerers(user: User, items: list[Any]) -> None:
    """Name who answered a letter when it was someone else (a colleague in a shared mailbox,
    a delegate in one's own): a team sees on the list who took a letter in hand, without
    opening it. One query for the page."""
    others = {item.answered_by_id for item in items if item.answered_at and item.answered_by_id not in (None, user.pk)}
    if not others:
        return
    names = {
        person.pk: person.display_name
        for person in User.objects.filter(pk__in=others).only("first_name", "last_name", "email")
    }
    for item in items:
        item.answered_name = names.get(item.answered_by_id, "") if item.answered_by_id != user.pk else ""


@require_GET
def folder(request: HttpRequest, mailbox_id: uuid.UUID, folder: str) -> HttpResponse:
    if folder not in FOLDERS:
        raise Http404
    mailbox = _mailbox_or_404(request, mailbox_id)
    # « Vider la corbeille » empties what was there when the page was shown: the time is
    # taken before the list is read (a letter binned after, even before the page is done,
    # was never shown).
    shown_at = timezone.now()
    # Likewise the number the page's poll counts new letters from (activity): read before
    # the list, a letter arriving meanwhile is announced once too often, never missed.
    arrivals_after = mailbox.last_uid
    try:
        page = services.folder_page(mailbox, folder, cursor=request.GET.get("cursor") or None)
    except services.BadCursor:
        raise Http404 from None
    services.record_listing(_user(request), mailbox, folder, len(page.items), request)
    _name_recipients(page.items)
    _name_answerers(_user(request), page.items)
    # The navigation's counts, worked out here rather than lazily in the template: the tab's
    # title shows this inbox's, as a mail client's does, for the queries the page made anyway.
    nav = mail_nav(_user(request))
    return render(
        request,
        "messaging/folder.html",
        {
            "mail_nav": nav,
            "unread": next((e.unread for e in nav.mailboxes if e.mailbox.pk == mailbox.pk), 0),
            "mailbox": mailbox,
            "folder": folder,
            "folder_label": Folder(folder).label,
            "page": page,
            "search_form": SearchForm(),
            "first_page": not request.GET.get("cursor"),
            "trash_days": settings.PLI_TRASH_DAYS if folder == Folder.TRASH else 0,
            "shown_at": shown_at.isoformat() if folder == Folder.TRASH else "",
            "selection_actions": SELECTION_BUTTONS[folder],
            "arrivals_after": arrivals_after if folder == Folder.INBOX and not request.GET.get("cursor") else None,
            # For the page's script: the number is put in place of %(count)s.
            "arrivals_one": ngettext("%(count)s new message has arrived.", "%(count)s new messages have arrived.", 1),
            "arrivals_many": ngettext("%(count)s new message has arrived.", "%(count)s new messages have arrived.", 2),
        },
    )


@require_GET
def activity(request: HttpRequest) -> JsonResponse:
    """What the pages left open ask every minute (activity.js): the unread counts of the
    navigation and, with ``mailbox`` and ``after`` (the number an inbox page was shown at),
    how many letters have arrived in that inbox since. Counts only, no subject: not a read,
    not recorded (a mailbox refused is), and not activity either (pli.accounts.middleware.PASSIVE_VIEWS: the session
    is not kept alive by a tab left open)."""
    nav = mail_nav(_user(request))
    body: dict[str, Any] = {
        "unread": nav.unread,
        "mailboxes": [{"id": str(entry.mailbox.pk), "unread": entry.unread} for entry in nav.mailboxes],
    }
    given_mailbox, given_after = request.GET.get("mailbox"), request.GET.get("after")
    if given_mailbox is not None or given_after is not None:
        try:
            mailbox_id = uuid.UUID(given_mailbox or "")
            after = int(given_after or "")
            if after < 0:
                raise ValueError(after)
        except ValueError:
            return _no_store(
                JsonResponse({"detail": _("Give mailbox (an id) and after (a number) together.")}, status=400)
            )
        mailbox = next((entry.mailbox for entry in nav.mailboxes if entry.mailbox.pk == mailbox_id), None)
        if mailbox is None:
            # As for any mailbox asked for and not the caller's: someone trying ids shows up.
            services.record_denied(_user(request), request, ("accounts.mailbox", mailbox_id), "activity")
            return _no_store(JsonResponse({"detail": _("Unknown mailbox.")}, status=404))
        body["arrived"] = services.arrived_count(mailbox, after)
    deadline = stored_deadline(request)
    if deadline is not None:
        # For the warning before the session ends: another tab may have kept it alive.
        body["session"] = {"ends_in": deadline.seconds, "extendable": deadline.extendable}
    return _no_store(JsonResponse(body))


def _no_store(response: JsonResponse) -> JsonResponse:
    response["Cache-Control"] = "no-store"
    return response


# The buttons over the letters ticked in a list, by where they are: "search" is the search's
# results, from every folder but the trash (a letter there may be in the inbox, sent or
# archived: each action files or marks it wherever it is; one's own sent copies are left
# unmarked, as in the sent folder).
SELECTION_BUTTONS: dict[str, frozenset[str]] = {
    Folder.INBOX: frozenset({"archive", "trash", "read", "unread"}),
    Folder.SENT: frozenset({"archive", "trash"}),
    Folder.ARCHIVE: frozenset({"restore", "trash", "read", "unread"}),
    Folder.TRASH: frozenset({"restore", "delete"}),
    "search": frozenset({"archive", "trash", "read", "unread"}),
}


class SearchForm(forms.Form):
    # Not remembered by the browser: a practice's computer is shared.
    q = forms.CharField(
        label=gettext_lazy("Words of the subject, patient name (or its first letters) or INS"),
        max_length=200,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    sender = forms.CharField(
        label=gettext_lazy("Sender"),
        max_length=200,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    date_from = forms.DateField(
        label=pgettext_lazy("date range", "From"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    date_to = forms.DateField(
        label=pgettext_lazy("date range", "To"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    # Every folder but the trash, or the trash alone (a letter binned by mistake).
    folder = forms.ChoiceField(
        label=gettext_lazy("Where"),
        choices=[("", gettext_lazy("Every folder but the trash")), (Folder.TRASH, gettext_lazy("The trash"))],
        required=False,
    )

    def clean_q(self) -> str:
        value: str = self.cleaned_data.get("q") or ""
        if value.strip() and not searchable(value):
            raise forms.ValidationError(_("Type at least one word of two letters or more, or an INS."), code="no_word")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        check_date_range(self, data, "date_from", "date_to")
        return data


@require_http_methods(["GET", "POST"])
def search(request: HttpRequest, mailbox_id: uuid.UUID) -> HttpResponse:
    """The search form, and its results. The form is posted and answered with a redirect to
    the results, whose link holds the words sealed (pli.messaging.search_links): the words
    are patient names and INS, which must not sit in URLs, the browser's history, the next
    page's Referer or a proxy's log, while the results stay a page one can go back to."""
    mailbox = _mailbox_or_404(request, mailbox_id)
    user = _user(request)
    names = list(SearchForm.base_fields)
    if request.method == "POST" or any(request.GET.get(name) for name in names):
        # Posted, or an old link that still carries the words: sealed, then redirected.
        source = request.POST if request.method == "POST" else request.GET
        form = SearchForm(source)
        if not form.is_valid():
            focus_first_error(form)
            return render(request, "messaging/search.html", {"mailbox": mailbox, "search_form": form}, status=400)
        # The cleaned values (dates in ISO form), not the text as typed: a link opened later,
        # in another language, reads the same.
        given = {
            name: value.isoformat() if isinstance(value, datetime.date) else str(value)
            for name, value in form.cleaned_data.items()
            if value
        }
        if not given:
            return redirect("messaging:search", mailbox.pk)
        token = search_links.seal(user.pk, mailbox.pk, given)
        return HttpResponseRedirect(f"{reverse('messaging:search', args=[mailbox.pk])}?s={token}", status=303)
    token = request.GET.get("s", "")
    fields = search_links.unseal(user.pk, mailbox.pk, token) if token else None
    if token and fields is None:
        messages.info(request, _("That search link is no longer valid: search again."))
        return redirect("messaging:search", mailbox.pk)
    form = SearchForm(fields)
    page = None
    in_trash = False
    sender_search = ""
    if form.is_bound and form.is_valid():
        query = services.SearchQuery(
            text=form.cleaned_data["q"],
            sender=form.cleaned_data["sender"],
            date_from=form.cleaned_data["date_from"],
            date_to=form.cleaned_data["date_to"],
        )
        if query:
            try:
                folder = form.cleaned_data["folder"] or None
                in_trash = folder == Folder.TRASH
                page = services.folder_page(mailbox, folder, cursor=request.GET.get("cursor") or None, query=query)
            except services.BadCursor:
                raise Http404 from None
            services.record_listing(user, mailbox, "search", len(page.items), request)
            _name_recipients(page.items)
            _name_answerers(user, page.items)
            if (
                not page.items
                and query.text
                and not query.sender
                and services.sent_by_someone_like(mailbox, query.text)
            ):
                # The words are a sender's name, not a subject's: the same search by sender,
                # its words sealed as any search's.
                by_sender = {**fields, "sender": fields["q"]} if fields else {}
                by_sender.pop("q", None)
                sender_search = search_links.seal(user.pk, mailbox.pk, by_sender)
    return render(
        request,
        "messaging/search.html",
        {
            "mailbox": mailbox,
            "search_form": form,
            "page": page,
            "search_token": token,
            "sender_search": sender_search,
            # The ticked results are filed or marked as a folder's are, and the page comes back.
            "selection_folder": Folder.TRASH if in_trash else Folder.INBOX,
            "selection_actions": SELECTION_BUTTONS[Folder.TRASH if in_trash else "search"],
        },
    )


@require_GET
def thread(request: HttpRequest, message_id: uuid.UUID) -> HttpResponse:
    # The mailbox it is read in (the folder lists link with it): only that copy is
    # marked read and filed.
    raw_mailbox = request.GET.get("mailbox")
    try:
        mailbox_id = uuid.UUID(raw_mailbox) if raw_mailbox else None
    except ValueError:
        raise Http404 from None
    try:
        entries = services.open_thread(_user(request), message_id, mailbox_id=mailbox_id, request=request)
    except services.NotVisible:
        services.record_denied(_user(request), request, ("messaging.message", message_id), "read", mailbox=mailbox_id)
        raise Http404 from None
    current = next((e for e in entries if e.message.pk == message_id), entries[-1])
    back_mailbox = current.copies[0].mailbox
    back_folder = current.copies[0].folder
    # Opened from a search's results (their link carries the search, sealed): back to them,
    # not to the folder, where the search would have to be typed again.
    back_search = request.GET.get("from", "")
    if back_search and search_links.unseal(_user(request).pk, back_mailbox.pk, back_search) is None:
        back_search = ""
    return render(
        request,
        "messaging/thread.html",
        {
            "entries": entries,
            "current": current,
            "subject": current.message.subject,
            "mailbox": back_mailbox,
            "folder": back_folder,
            "back_search": back_search,
            "folders": FOLDERS,
            "inline_types": list(uploads.INLINE_TYPES),
        },
    )


# --- compose --------------------------------------------------------------------------------


# What a reply quotes or a forward carries of the text, at most: the form's body must
# still fit in BODY_MAX with what the practitioner writes above it.
QUOTED_MAX = BODY_MAX // 2
FORWARDED_MAX = BODY_MAX - 20_000


def _cut(text: str, limit: int, note: str) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(note) - 2].rstrip() + "\n" + note


def _quote(text: str) -> str:
    quoted = "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
    return _cut(quoted, QUOTED_MAX, _("> […] (cut here: the whole message is in the conversation)"))


# Prefixes mail clients put on replies and forwards, in French, English and neighbouring
# languages ("RE :", "Re:", "AW:", "TR :", "Fwd:", "WG:"...): an answer to an answer keeps
# one prefix instead of piling them up. Not "Réf :", which starts many a first subject.
_REPLY_PREFIX = re.compile(r"\s*(?:re|aw|antw|sv|rif)\s*(?:\[[0-9]+\])?\s*:", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"\s*(?:fwd?|tr|wg|enc|rv)\s*:", re.IGNORECASE)


def _prefix(subject: str, prefix: str, already: re.Pattern[str]) -> str:
    # Cut to the longest subject the form takes: a subject of that length answered came
    # back refused on a field the practitioner had not typed.
    return (subject if already.match(subject) else f"{prefix} {subject}".strip())[:SUBJECT_MAX]


def _initial(request: HttpRequest, user: User) -> dict[str, Any]:
    """Pre-filled values for a new message, a reply, a reply to all or a forward."""
    mailboxes = services.mailbox_list(user)
    initial: dict[str, Any] = {}
    wanted = request.GET.get("mailbox")
    sender = next((m for m in mailboxes if str(m.pk) == wanted), mailboxes[0] if mailboxes else None)
    to = request.GET.get("to")
    if to:
        initial["to"] = [to]
    source_id, mode = request.GET.get("reply_to") or request.GET.get("forward"), request.GET.get("mode", "reply")
    if request.GET.get("forward"):
        mode = "forward"
    elif mode != "reply_all":
        mode = "reply"
    if source_id:
        copies = services.visible_copies(user, source_id)
        if not copies:
            services.record_denied(user, request, ("messaging.message", source_id), mode)
            raise Http404
        message = copies[0].message
        # The form shows the message (its text quoted, its patient, its attachments' names).
        audit.record("message.read", actor=user, target=message, request=request, details={"for": mode})
        own = {m.pk for m in mailboxes}
        # As the copy in the mailbox it is answered from stands: one's own sent copy is
        # answered to its recipients, even when one's shared mailbox received it too.
        incoming = [c for c in ([c for c in copies if str(c.mailbox_id) == wanted] or copies) if c.is_incoming]
        if incoming and wanted is None:
            sender = incoming[0].mailbox
        # Answered from the mailbox that sent it, a letter is one's own even when that
        # mailbox received it too (the author put herself in copy): answered to her, it
        # went to her alone and never to its recipients.
        sent_by_me = message.sender_id in own and (
            not incoming or (sender is not None and sender.pk == message.sender_id)
        )
        # Not the mailbox answered from, nor the replier's own (her answer would come back
        # to her, unread), unless nobody else is left to answer.
        left_out = {m.address.lower() for m in mailboxes if m.owner_id == user.pk}
        if sender is not None:
            left_out.add(sender.address.lower())
        recipients = services.message_recipients(message)
        # A message from outside Pli's mailboxes (a patient's reply) has no address to
        # answer to, but its readers still see who wrote it.
        origin = message.sender.address if message.sender else ""
        # The reader's time, not the stored UTC; the person's name as well as the address.
        sent_at = timezone.localtime(message.sent_at).strftime("%d/%m/%Y %H:%M")
        author = f"{message.sender_label} <{origin}>" if origin else message.sender_label
        header = _("On %(date)s, %(sender)s wrote:") % {"date": sent_at, "sender": author}
        if mode == "forward":
            initial["forward_of"] = message.pk
            initial["subject"] = _prefix(message.subject, _("Fwd:"), _FORWARD_PREFIX)
            initial["forward_attachments"] = [str(a.pk) for a in services.message_attachments(message)]

            # As mail clients write it, so the next reader knows where the message came from.
            def named(role: str) -> str:
                return ", ".join(f"{r.mailbox.name} <{r.mailbox.address}>" for r in recipients if r.role == role)

            forwarded = [
                _("---------- Forwarded message ----------"),
                _("From: %(sender)s") % {"sender": author},
                _("Date: %(date)s") % {"date": sent_at},
                _("Subject: %(subject)s") % {"subject": message.subject},
                _("To: %(recipients)s") % {"recipients": named(Role.TO)},
            ]
            if any(r.role == Role.CC for r in recipients):
                forwarded.append(_("Cc: %(recipients)s") % {"recipients": named(Role.CC)})
            body = _cut(message.body, FORWARDED_MAX, _("[…] (the rest of this message is too long to be forwarded)"))
            initial["body"] = "\n\n" + "\n".join(forwarded) + "\n\n" + body
        else:
            initial["in_reply_to"] = message.pk
            initial["subject"] = _prefix(message.subject, _("Re:"), _REPLY_PREFIX)
            initial["body"] = f"\n\n{header}\n{_quote(message.body)}"
            if sent_by_me:
                # Not a mailbox closed since: the form would refuse it.
                to_list = [r.mailbox.address for r in recipients if r.role == Role.TO and r.mailbox.is_active]
                to_list = [a for a in to_list if a.lower() not in left_out] or to_list
            else:
                to_list = [origin] if origin else []
            cc_list: list[str] = []
            if mode == "reply_all":
                # Not those left out above, nor one closed since (the form would refuse it).
                # A shared mailbox she belongs to stays: the team sees the answer.

                def others(role: str) -> list[str]:
                    return [
                        r.mailbox.address
                        for r in recipients
                        if r.role == role and r.mailbox.is_active and r.mailbox.address.lower() not in left_out
                    ]

                to_list += others(Role.TO)
                cc_list = others(Role.CC)
            initial["to"] = list(dict.fromkeys(to_list))
            initial["cc"] = list(dict.fromkeys(cc_list))
        patient = message.patient
        if patient:
            initial.update(
                {
                    "patient_ins": patient.get("ins", ""),
                    "patient_family_name": patient.get("family_name", ""),
                    "patient_given_names": patient.get("given_names", ""),
                    "patient_birth_date": patient.get("birth_date", ""),
                    "patient_sex": patient.get("sex", ""),
                    "patient_birthplace_code": patient.get("birthplace_code", ""),
                }
            )
    if sender is not None:
        initial["sender"] = sender.address
    return initial


def _directory_url() -> str:
    """The directory's "results as you type" endpoint (JSON), if the directory is installed."""
    try:
        return reverse("directory:search")
    except NoReverseMatch:
        return ""


def _compose_source(form: PageComposeForm) -> uuid.UUID | None:
    """The letter being answered or forwarded, for the form's way back to it."""
    for name in ("in_reply_to", "forward_of"):
        value = form[name].value()
        if value:
            try:
                return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
            except ValueError:  # a tampered form: refused by its own validation
                return None
    return None


def _render_compose(request: HttpRequest, form: PageComposeForm, status: int = 200) -> HttpResponse:
    focus_first_error(form)  # the page's script does it after a refusal it shows in place
    source = _compose_source(form)
    replying = source is not None and bool(form["in_reply_to"].value())
    return render(
        request,
        "messaging/compose.html",
        {
            "form": form.for_page(),
            "limits": attachment_limits_text(),
            "max_attachments": uploads.max_attachments(),
            "max_bytes": uploads.max_message_bytes(),
            "max_size": limit_size(uploads.max_message_bytes()),
            "body_max": BODY_MAX,
            "directory_url": _directory_url(),
            "source": source,
            "replying": replying,
            "replying_to_all": replying and request.GET.get("mode") == "reply_all",
            "forwarding": source is not None and not replying,
            # Two members of a team answered the same letter, with different dates.
            "answered_by": services.answered_by_others(_user(request), source) if replying and source else [],
            "patient_open": any(
                form[name].value() for name in ("patient_ins", "patient_family_name", "patient_given_names")
            )
            or any(name.startswith("patient_") for name in form.errors),
        },
        status=status,
    )


@csrf_exempt
@require_http_methods(["GET", "POST"])
def compose(request: HttpRequest) -> HttpResponseBase:
    """GET shows the form; POST sends. The upload handler is installed before anything
    reads the body, so attachments are encrypted as they arrive (CSRF is checked right after
    parsing, by the inner view, hence csrf_exempt here)."""
    user = _user(request)
    if request.method != "POST":
        return _render_compose(request, PageComposeForm(user=user, initial=_initial(request, user)))
    with UploadSession() as session:
        uploads.install(request, session)
        try:
            request.POST  # noqa: B018 - parse now: the handler encrypts the files as they come
        except UploadRejected as exc:
            request._mark_post_parse_error()  # type: ignore[attr-defined]
            form = _form_with_error(request, user, exc.field, exc.message)
            return _render_compose(request, form, status=exc.status)
        except (MultiPartParserError, RequestDataTooBig, TooManyFieldsSent, SuspiciousOperation):
            request._mark_post_parse_error()  # type: ignore[attr-defined]
            message = _("The form could not be read (too large or malformed). Please try again.")
            return _render_compose(request, _form_with_error(request, user, "body", message), status=400)
        except OSError as exc:
            if not storage.is_full(exc):
                raise
            # No room for the files: the form again, as typed, with the files still chosen.
            storage.log_full(exc)
            request._mark_post_parse_error()  # type: ignore[attr-defined]
            form = _form_with_error(request, user, "attachments", storage.message())
            return _render_compose(request, form, status=storage.INSUFFICIENT_STORAGE)
        return csrf_protect(_send)(request, session)


def _form_with_error(request: HttpRequest, user: User, field: str, message: str) -> PageComposeForm:
    """The form again, with what was typed before the upload was refused (the files cannot
    be given back), and why."""
    typed = uploads.texts_read(request, multiple=("to", "cc", "forward_attachments"))
    initial = _initial(request, user) | {
        name: value for name, value in typed.items() if name in PageComposeForm.base_fields
    }
    form = PageComposeForm(user=user, initial=initial)
    form.cleaned_data = {}
    form.add_error(field if field in form.fields else "attachments", message)
    return form


def _send(request: HttpRequest, session: UploadSession) -> HttpResponseBase:
    user = _user(request)
    form = PageComposeForm(request.POST, request.FILES, user=user, uploads=uploads.pending_uploads(request.FILES))
    if not form.is_valid():
        return _render_compose(request, form, status=400)
    try:
        message = services.send_message(user, form.draft(), session=session, request=request)
    except services.UploadExpired:
        form.add_error("attachments", _("The upload took too long and expired. Please attach the files again."))
        return _render_compose(request, form, status=400)
    except services.SourceGone as exc:
        form.add_error(exc.field, _("Unknown message."))
        return _render_compose(request, form, status=400)
    except services.ContentUnavailable:
        return content_unavailable(request)
    except (OSError, DatabaseError) as exc:
        if not storage.is_full(exc):
            raise
        storage.log_full(exc)
        form.add_error("attachments", storage.message())
        return _render_compose(request, form, status=storage.INSUFFICIENT_STORAGE)
    messages.success(request, _("Message sent."))
    location = _thread_url(message.pk, message.sender_id)
    if request.headers.get(UPLOAD_HEADER):
        return JsonResponse({"location": location}, status=201)
    return HttpResponseRedirect(location, status=303)


# --- attachments ----------------------------------------------------------------------------


def content_disposition(kind: str, name: str) -> str:
    """RFC 6266: an ASCII fallback and the exact UTF-8 name in ``filename*``."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in name) or "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def attachment_response(attachment: Attachment, content: ReadAhead, *, download: bool) -> StreamingHttpResponse:
    content_type = attachment.content_type
    inline = not download and content_type in uploads.INLINE_TYPES
    response = StreamingHttpResponse(content, content_type=content_type)
    response["Content-Length"] = str(attachment.size)
    response["Content-Disposition"] = content_disposition("inline" if inline else "attachment", attachment.name)
    response["X-Content-Type-Options"] = "nosniff"
    # Even a PDF or an image shown in the browser runs in a sandbox: no script, no forms,
    # no access to the Pli origin.
    response["Content-Security-Policy"] = INLINE_CSP
    return response


@require_GET
def attachment(request: HttpRequest, message_id: uuid.UUID, attachment_id: uuid.UUID) -> HttpResponseBase:
    try:
        item, reader = services.open_attachment(_user(request), message_id, attachment_id, request=request)
    except services.NotVisible:
        services.record_denied(
            _user(request), request, ("messaging.message", message_id), "download", attachment=attachment_id
        )
        raise Http404 from None
    except services.ContentUnavailable:
        return content_unavailable(request)
    return attachment_response(item, reader, download=bool(request.GET.get("download")))


# --- filing ---------------------------------------------------------------------------------


def _next_url(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False):
        return target
    return fallback


def _mailbox_param(request: HttpRequest) -> uuid.UUID | None:
    raw = request.POST.get("mailbox")
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Http404 from None


def _thread_url(message_id: uuid.UUID, mailbox_id: uuid.UUID | None) -> str:
    """The thread as read in ``mailbox_id`` (see thread)."""
    url = reverse("messaging:thread", args=[message_id])
    return f"{url}?mailbox={mailbox_id}" if mailbox_id else url


@require_POST
def move(request: HttpRequest, message_id: uuid.UUID) -> HttpResponse:
    folder = request.POST.get("folder", "")
    mailbox_id = _mailbox_param(request)
    if folder not in services.MOVE_TARGETS:
        messages.error(request, _("Unknown folder."))
        return redirect(_thread_url(message_id, mailbox_id))
    moved: list[services.Move] = []
    try:
        copies = services.move_message(
            _user(request), message_id, folder, mailbox_id=mailbox_id, request=request, moved=moved
        )
    except services.NotVisible:
        services.record_denied(_user(request), request, ("messaging.message", message_id), "move", mailbox=mailbox_id)
        raise Http404 from None
    if folder in (Folder.INBOX, Folder.SENT):
        messages.success(request, _("Moved back."))
    else:
        _moved(request, _("Moved to %(folder)s.") % {"folder": Folder(folder).label}, moved)
    _moved_meanwhile(request, request.POST.get("shown", ""), moved)
    fallback = reverse("messaging:folder", args=[copies[0].mailbox_id, copies[0].home_folder])
    return redirect(_next_url(request, fallback))


@require_POST
def unread(request: HttpRequest, message_id: uuid.UUID) -> HttpResponse:
    """ "Marquer comme non lu": back to the folder, where the letter waits in bold."""
    mailbox_id = _mailbox_param(request)
    user = _user(request)
    try:
        copies = services.mark_unread(user, message_id, mailbox_id=mailbox_id, request=request)
    except services.NotVisible:
        services.record_denied(user, request, ("messaging.message", message_id), "unread", mailbox=mailbox_id)
        raise Http404 from None
    except services.NotReceived:
        messages.error(request, _("Only a message you received can be marked unread."))
        return redirect(_thread_url(message_id, mailbox_id))
    messages.success(request, _("Marked unread."))
    return redirect("messaging:folder", mailbox_id=copies[0].mailbox_id, folder=copies[0].folder)


# What a folder's list can do to the messages ticked in it: (filed into, or read state).
SELECTION_ACTIONS = {
    "archive": Folder.ARCHIVE,
    "trash": Folder.TRASH,
    "restore": Folder.INBOX,  # back where each belongs: the inbox, or "sent" for one's own
    "read": "read",
    "unread": "unread",
    "delete": "delete",  # for good, from the trash only, once confirmed
}
# A page lists 50; more is not a person's selection.
SELECTION_MAX = 200


@require_POST
def selection(request: HttpRequest, mailbox_id: uuid.UUID, folder: str) -> HttpResponse:
    """The messages ticked in a folder's list, archived, binned, put back, or marked read or
    unread at once: each one as its own page would (its own audit event), all or none."""
    if folder not in FOLDERS:
        raise Http404
    mailbox = _mailbox_or_404(request, mailbox_id)
    user = _user(request)
    back = _next_url(request, reverse("messaging:folder", args=[mailbox.pk, folder]))
    action = SELECTION_ACTIONS.get(request.POST.get("action", ""))
    raw = request.POST.getlist("message")
    if action is None:
        messages.error(request, _("Choose what to do with the selected messages."))
        return redirect(back)
    if not raw:
        messages.error(request, _("Select at least one message first (the boxes at the start of each line)."))
        return redirect(back)
    if len(raw) > SELECTION_MAX:
        messages.error(request, _("Select at most %(max)d messages at once.") % {"max": SELECTION_MAX})
        return redirect(back)
    ids: list[uuid.UUID] = []
    for value in raw:
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            raise Http404 from None
    ids = list(dict.fromkeys(ids))
    if action == "delete":
        return _delete_selection(request, mailbox, folder, ids, back)
    done = missing = skipped = 0
    moved: list[services.Move] = []
    with transaction.atomic():
        services.lock_selection(mailbox, ids)  # every copy before the first audit event
        for message_id in ids:
            try:
                if action == "read":
                    services.mark_read(user, message_id, mailbox_id=mailbox.pk, request=request)
                elif action == "unread":
                    services.mark_unread(user, message_id, mailbox_id=mailbox.pk, request=request)
                else:
                    services.move_message(user, message_id, action, mailbox_id=mailbox.pk, request=request, moved=moved)
            except services.NotVisible:
                # Deleted for good by a colleague since the list was shown, or never this
                # mailbox's: the same answer, and the attempt recorded.
                services.record_denied(
                    user, request, ("messaging.message", message_id), "selection", mailbox=mailbox.pk
                )
                missing += 1
                continue
            except services.NotReceived:
                skipped += 1  # one's own sent copy is neither read nor unread
                continue
            done += 1
    if done and action in (Folder.ARCHIVE, Folder.TRASH):
        _moved(request, _selection_done(action, done), moved)
    elif done:
        messages.success(request, _selection_done(action, done))
    _moved_meanwhile(request, request.POST.get("shown", ""), moved)
    if skipped:
        messages.info(
            request,
            ngettext(
                "%(count)d message you sent was left as it was: only received messages are read or unread.",
                "%(count)d messages you sent were left as they were: only received messages are read or unread.",
                skipped,
            )
            % {"count": skipped},
        )
    _report_gone(request, 0, missing)
    return redirect(back)


def _delete_selection(
    request: HttpRequest, mailbox: Mailbox, folder: str, ids: list[uuid.UUID], back: str
) -> HttpResponse:
    """« Supprimer définitivement » on the letters ticked in the trash: asked on a page of
    its own first (the script's dialog answers it with ``confirmed=1``), then all or none."""
    user = _user(request)
    if folder != Folder.TRASH:
        messages.error(
            request,
            _("Only messages in the trash can be deleted for good: move them to the trash first."),
        )
        return redirect(back)
    if request.POST.get("confirmed") != "1":
        found = services.trash_selection(mailbox, ids)
        # (Deleted by this user a moment ago, the list shown again from the browser's cache:
        # gone, said so, but not recorded as an attempt on another's letters.)
        _refused(request, user, mailbox, [m for m in found.missing if not services.deleted_by(user, m)])
        missing = len(found.missing)
        if not found.letters:
            _report_gone(request, len(found.elsewhere), missing)
            return redirect(back)
        letters = [copies[0].message for copies in found.letters.values()]
        # The page shows their subjects, as the list does: a read, recorded as one.
        services.record_listing(user, mailbox, Folder.TRASH, len(letters), request)
        context = {
            "mailbox": mailbox,
            "letters": letters,
            "count": len(letters),
            "not_listed": len(found.elsewhere) + missing,
            "action": reverse("messaging:selection", args=[mailbox.pk, folder]),
            "back": back,
        }
        return render(request, "messaging/confirm_delete_selection.html", context)
    result = services.delete_selection(user, mailbox, ids, request=request)
    # Deleted by this user a moment ago (the confirmation sent twice): answered as the first.
    again = [message_id for message_id in result.missing if services.deleted_by(user, message_id)]
    missing = _refused(request, user, mailbox, [m for m in result.missing if m not in again])
    deleted = result.deleted + len(again)
    if deleted:
        messages.success(
            request,
            ngettext("%(count)d message deleted for good.", "%(count)d messages deleted for good.", deleted)
            % {"count": deleted},
        )
    _report_gone(request, len(result.elsewhere), missing)
    return redirect(back)


def _refused(request: HttpRequest, user: User, mailbox: Mailbox, message_ids: list[uuid.UUID]) -> int:
    """Ticked letters the mailbox does not hold: recorded as the other selections do."""
    for message_id in message_ids:
        services.record_denied(user, request, ("messaging.message", message_id), "selection", mailbox=mailbox.pk)
    return len(message_ids)


def _report_gone(request: HttpRequest, elsewhere: int, missing: int) -> None:
    if elsewhere:
        messages.error(
            request,
            ngettext(
                "%(count)d selected message is no longer in the trash (put back meanwhile?): it was left as it was.",
                "%(count)d selected messages are no longer in the trash (put back meanwhile?): "
                "they were left as they were.",
                elsewhere,
            )
            % {"count": elsewhere},
        )
    if missing:
        messages.error(
            request,
            ngettext(
                "%(count)d selected message is no longer in this mailbox (deleted for good meanwhile?).",
                "%(count)d selected messages are no longer in this mailbox (deleted for good meanwhile?).",
                missing,
            )
            % {"count": missing},
        )


def _trash_until(request: HttpRequest) -> datetime.datetime:
    """When the trash's page was shown (the form says): what went in after is not emptied."""
    try:
        until = datetime.datetime.fromisoformat(request.POST.get("until", ""))
    except ValueError:
        return timezone.now()
    if timezone.is_naive(until):
        return timezone.now()
    try:
        # In UTC, as the database holds it: year 1 east of Greenwich is before year 1 there.
        until = until.astimezone(datetime.UTC)
    except OverflowError:
        return timezone.now()
    return min(until, timezone.now())


@require_POST
def empty_trash(request: HttpRequest, mailbox_id: uuid.UUID) -> HttpResponse:
    """« Vider la corbeille »: every letter in the trash deleted for good, once confirmed."""
    mailbox = _mailbox_or_404(request, mailbox_id)
    user = _user(request)
    trash = reverse("messaging:folder", args=[mailbox.pk, Folder.TRASH])
    until = _trash_until(request)
    if request.POST.get("confirmed") != "1":
        count = services.trash_count(mailbox, until)
        if not count:
            messages.info(request, _("The trash is already empty."))
            return redirect(trash)
        context = {
            "mailbox": mailbox,
            "count": count,
            "until": until.isoformat(),
            "batched": count > services.EMPTY_TRASH_BATCH,
            "batch": services.EMPTY_TRASH_BATCH,
            "back": trash,
        }
        return render(request, "messaging/confirm_empty_trash.html", context)
    deleted = services.empty_trash(user, mailbox, until=until, request=request)
    if deleted:
        messages.success(
            request,
            ngettext(
                "Trash emptied: %(count)d message deleted for good.",
                "Trash emptied: %(count)d messages deleted for good.",
                deleted,
            )
            % {"count": deleted},
        )
    else:
        messages.info(request, _("The trash is already empty."))
    return redirect(trash)


# « Annuler » after archiving or binning: the copies moved, kept in the session (their keys
# and folders only) for a few minutes. Each filing is undone on its own: the « Annuler » of
# letters archived in one tab puts back those letters, not the ones binned since in another.
UNDO_SESSION_KEY = "pli.messaging.undo"
UNDO_SECONDS = 10 * 60
UNDO_KEPT = 10  # the latest filings that can still be undone


def _moved_meanwhile(request: HttpRequest, shown: str, moved: list[services.Move]) -> None:
    """Letters a colleague had filed elsewhere since the page showed them (in ``shown``):
    still moved as asked, but said, since « Annuler » puts them back where the colleague
    had put them. Two members of a team filed the same letter from two pages: the archived
    one went to the trash without a word."""
    if shown not in FOLDERS:
        return
    elsewhere = [move for move in moved if move.source != shown]
    if not elsewhere:
        return
    if len(moved) == 1:
        text = _(
            "Meanwhile, someone had moved this message to %(folder)s: it was moved all the same; « Undo » puts "
            "it back there."
        ) % {"folder": Folder(elsewhere[0].source).label}
    else:
        text = ngettext(
            "%(count)d of these messages had been moved to another folder by someone else meanwhile: it was "
            "moved all the same; « Undo » puts it back there.",
            "%(count)d of these messages had been moved to other folders by someone else meanwhile: they were "
            "moved all the same; « Undo » puts them back there.",
            len(elsewhere),
        ) % {"count": len(elsewhere)}
    messages.warning(request, text)


def _moved(request: HttpRequest, text: str, moved: list[services.Move]) -> None:
    """The success message of letters filed into the archive or the trash, with « Annuler »
    (base.html shows the button on a message tagged "undo", with the id of this filing): a
    letter archived or binned by a slip of the finger is put back in one tap, where it was."""
    if not moved:
        messages.success(request, text)
        return
    batch_id = secrets.token_urlsafe(9)
    batches = _stored_batches(request.session.get(UNDO_SESSION_KEY))[-(UNDO_KEPT - 1) :]
    batches.append({"id": batch_id, "at": time.time(), "moves": [list(move) for move in moved]})
    request.session[UNDO_SESSION_KEY] = {"batches": batches}
    messages.success(request, text, extra_tags=f"undo {UNDO_TAG_PREFIX}{batch_id}")


def _stored_batches(data: Any) -> list[dict[str, Any]]:
    """The filings :func:`_moved` kept that are still recent, oldest first."""
    batches = data.get("batches") if isinstance(data, dict) else None
    if not isinstance(batches, list):
        return []
    now = time.time()
    kept = []
    for batch in batches:
        try:
            if now - float(batch["at"]) <= UNDO_SECONDS and isinstance(batch["id"], str):
                kept.append(batch)
        except (KeyError, TypeError, ValueError):
            continue
    return kept


def _moves_of(batch: dict[str, Any]) -> list[services.Move]:
    try:
        moves = [services.Move(int(copy), str(source), str(target)) for copy, source, target in batch["moves"]]
    except (KeyError, TypeError, ValueError):
        return []
    return [move for move in moves if move.source in services.MOVE_TARGETS]


def _take_batch(request: HttpRequest) -> list[services.Move]:
    """The moves of the filing whose « Annuler » was pressed (the latest when the form names
    none), removed from the session: each is undone once."""
    batches = _stored_batches(request.session.get(UNDO_SESSION_KEY))
    wanted = request.POST.get("undo", "")
    index = next((i for i, b in enumerate(batches) if b["id"] == wanted), None) if wanted else len(batches) - 1
    if index is None or index < 0:
        return []
    batch = batches.pop(index)
    request.session[UNDO_SESSION_KEY] = {"batches": batches}
    return _moves_of(batch)


@require_POST
def undo(request: HttpRequest) -> HttpResponse:
    """« Annuler » beside « 3 messages archivés. »: the letters go back where they were,
    those still where they were filed and in a mailbox the user still works in. Once only."""
    back = _next_url(request, reverse("messaging:home"))
    moves = _take_batch(request)
    if not moves:
        messages.info(request, _("There is nothing to undo any more."))
        return redirect(back)
    done = services.undo_moves(_user(request), moves, request=request)
    if done:
        messages.success(
            request,
            ngettext("%(count)d message put back where it was.", "%(count)d messages put back where they were.", done)
            % {"count": done},
        )
    else:
        messages.info(request, _("Nothing was put back: these messages have been moved or deleted since."))
    return redirect(back)


def _selection_done(action: str, count: int) -> str:
    if action == "read":
        text = ngettext("%(count)d message marked read.", "%(count)d messages marked read.", count)
    elif action == "unread":
        text = ngettext("%(count)d message marked unread.", "%(count)d messages marked unread.", count)
    elif action == Folder.ARCHIVE:
        text = ngettext("%(count)d message archived.", "%(count)d messages archived.", count)
    elif action == Folder.TRASH:
        text = ngettext("%(count)d message moved to the trash.", "%(count)d messages moved to the trash.", count)
    else:
        text = ngettext("%(count)d message put back.", "%(count)d messages put back.", count)
    return text % {"count": count}


@require_POST
def delete(request: HttpRequest, message_id: uuid.UUID) -> HttpResponse:
    mailbox_id = _mailbox_param(request)
    user = _user(request)
    copies = services.visible_copies(user, message_id)
    copy = next((c for c in copies if mailbox_id is None or c.mailbox_id == mailbox_id), None)
    if copy is not None and copy.folder == Folder.TRASH and request.POST.get("confirmed") != "1":
        # Sent without the page's script, which asks first: asked on a page of its own.
        context = {"message_id": message_id, "mailbox": copy.mailbox, "back": _thread_url(message_id, copy.mailbox_id)}
        return render(request, "messaging/confirm_delete.html", context)
    try:
        services.delete_message(user, message_id, mailbox_id=mailbox_id, request=request)
    except services.NotVisible:
        if (
            mailbox_id is not None
            and services.mailboxes_for(user).filter(pk=mailbox_id).exists()
            and services.deleted_by(user, message_id)
        ):
            # Deleted by this very user a moment ago: the same form sent twice (a double
            # click), not someone trying ids. Answered as the first one was, for one of
            # their own mailboxes only: another one is refused and recorded as before.
            messages.success(request, _("Message deleted for good."))
            return redirect("messaging:folder", mailbox_id=mailbox_id, folder=Folder.TRASH)
        services.record_denied(user, request, ("messaging.message", message_id), "delete", mailbox=mailbox_id)
        raise Http404 from None
    except services.NotInTrash:
        messages.error(request, _("Only a message in the trash can be deleted for good."))
        return redirect(_thread_url(message_id, mailbox_id))
    messages.success(request, _("Message deleted for good."))
    return redirect("messaging:folder", mailbox_id=mailbox_id or copies[0].mailbox_id, folder=Folder.TRASH)


def message_url(message: Message) -> str:
    return reverse("messaging:thread", args=[message.pk])
