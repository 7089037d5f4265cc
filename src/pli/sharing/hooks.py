"""What SMS providers post back to Pli: Twilio's delivery reports.

Twilio calls ``PLI_PUBLIC_URL/hooks/sms/twilio`` (the ``StatusCallback`` each message asks
for, see pli.notify.sms.get_backend) as a message's status changes. The request is public
by nature; only a valid ``X-Twilio-Signature`` over the exact URL Pli gave Twilio, for
Pli's own account, is acted upon. Nothing of it is logged but its verdict: a report names
the patient's number.
"""

from __future__ import annotations

import logging
import uuid

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from pli.notify import sms
from pli.sharing import notifications

logger = logging.getLogger(__name__)


@csrf_exempt  # Twilio has no CSRF token: its signature authenticates the request
@login_not_required
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    backend = sms.get_backend()
    if not isinstance(backend, sms.TwilioBackend) or not backend.status_callback:
        # Pli asked for no reports: nothing posted here can be checked.
        return HttpResponse(status=404)
    params = [(name, value) for name, values in request.POST.lists() for value in values]
    signature = request.headers.get("X-Twilio-Signature", "")
    # The notification the URL names (sms.TwilioBackend.callback_url); none in the reports
    # of messages sent before it did.
    notification_id: uuid.UUID | None = None
    if request.GET:
        try:
            notification_id = uuid.UUID(request.GET.get("n", ""))
        except ValueError:
            return HttpResponse(status=403)
    url = backend.callback_url(str(notification_id) if notification_id else "")
    if not backend.signed_by_twilio(url, params, signature):
        logger.warning("SMS delivery report refused: its signature is not Twilio's for this instance")
        return HttpResponse(status=403)
    if request.POST.get("AccountSid") != backend.account_sid:
        logger.warning("SMS delivery report refused: it is about another Twilio account")
        return HttpResponse(status=403)
    outcome = notifications.record_delivery_report(
        request.POST.get("MessageSid", "")[:64],
        request.POST.get("MessageStatus", ""),
        request.POST.get("ErrorCode", ""),
        notification_id=notification_id,
    )
    logger.info("SMS delivery report: %s", outcome)
    # Twilio only needs a success; it retries nothing on a 2xx.
    return HttpResponse(status=204)
