"""Example patient shares for the demo organisation that `pli run` seeds (development only).

Two practitioners each hand a document to a synthetic patient through a secure link: the
shares list shows them with their status, and the link notifications (e-mail, and SMS when
SMS are captured in files) reach the development outbox (``/dev/outbox/``) once the worker
that `pli run` starts has delivered them. From there a newcomer can play the patient.

Each share is made the way the share page makes one: the form validates it (birth date,
INS, contacts), the document is encrypted into the shares' store exactly as the upload
handler writes it, and :func:`services.create_share` saves it and queues its notifications.
The patients' e-mail addresses are at example.org (reserved, never delivered).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from pli.accounts.models import Mailbox, Organisation, User
from pli.messaging.demo import CARDIOLOGIST, GP, SECRETARIAT, DemoContentError, demo_pdf
from pli.messaging.uploads import store_bytes
from pli.sharing import services
from pli.sharing.forms import ShareForm
from pli.sharing.models import PatientShare
from pli.sharing.outbox import sms_directory
from pli.sharing.uploads import PendingFile, UploadBatch, document_rules

# The fictional-use mobile range (ARCEP: 06 39 98 xx xx) would be the natural choice, but
# libphonenumber holds it invalid, so the SMS service refuses it and the notification would
# fail. The number below is only ever used while SMS go to files (the development outbox):
# with a real SMS provider configured, the demo shares go by e-mail only, so the demo can
# never text anyone's phone.
DEMO_MOBILE = "+33 6 00 00 00 01"


def add_document(batch: UploadBatch, name: str, content: bytes, content_type: str) -> PendingFile:
    return store_bytes(batch, name, content, content_type, aad_for=document_rules().aad_for)


@dataclass(frozen=True)
class DemoShare:
    practitioner: str  # the demo account's e-mail
    given_name: str
    family_name: str
    birth_date: str  # as typed in the form, DD/MM/YYYY
    email: str
    with_mobile: bool
    message: str
    document_name: str
    document_title: str
    document_lines: Sequence[str | tuple[str, ...]]
    ins: str = ""
    allow_reply: bool = False
    # The shared mailbox it is sent from, by name (the practitioner's own when empty): the
    # patient's replies arrive there, and the mailbox's members follow the share.
    team: str = ""


BLOOD_TEST = DemoShare(
    practitioner=GP,
    given_name="Lucie",
    family_name="Essai",
    birth_date="14/06/1991",
    email="lucie.essai@example.org",
    with_mobile=True,
    ins="291066999900376",
    message=(
        "Bonjour,\n\nVoici les résultats de votre prise de sang : ils sont normaux. Nous en "
        "reparlerons à votre prochaine consultation.\n\nBonne journée,\nDr Jeanne Martin"
    ),
    document_name="Résultats de prise de sang.pdf",
    document_title="Compte rendu d'analyses de biologie médicale",
    document_lines=(
        "Laboratoire d'analyses médicales (fictif) — Lyon",
        "",
        "Patiente : Lucie ESSAI, née le 14/06/1991",
        "Prescripteur : Dr Jeanne Martin",
        "",
        ("Analyse", "Résultat", "Valeurs de référence"),
        ("Hémoglobine", "13,1 g/dL", "12,0 - 16,0"),
        ("Ferritine", "54 µg/L", "15 - 150"),
        ("TSH", "1,8 mUI/L", "0,4 - 4,0"),
        "",
        "Résultats dans les valeurs de référence.",
    ),
)

HOLTER = DemoShare(
    practitioner=CARDIOLOGIST,
    given_name="Henri",
    family_name="Exemple",
    birth_date="12/04/1958",
    email="henri.exemple@example.org",
    with_mobile=False,
    message=(
        "Bonjour Monsieur,\n\nComme convenu avec le Dr Martin, vous trouverez ci-joint les consignes "
        "pour l'enregistrement Holter de 24 heures. Vous pouvez répondre ici pour confirmer le "
        "rendez-vous.\n\nCordialement,\nDr Paul Durand"
    ),
    document_name="Consignes Holter ECG.pdf",
    document_title="Votre enregistrement Holter ECG de 24 heures",
    document_lines=(
        "Cabinet de démonstration Pli — Cardiologie — Lyon",
        "",
        "Le boîtier enregistre votre cœur pendant 24 heures, sans douleur.",
        "",
        "- Venez avec une tenue ample ; évitez les crèmes sur la poitrine ce jour-là.",
        "- Gardez vos activités habituelles et vos traitements.",
        "- Notez sur la fiche remise les heures de vos éventuelles palpitations.",
        "- Pas de douche ni de bain pendant l'enregistrement.",
        "",
        "Le boîtier se rapporte au cabinet le lendemain, à la même heure.",
    ),
    allow_reply=True,
    # The appointment is the secretariat's business: Claire Petit sees the patient's answer.
    team=SECRETARIAT,
)

DEMO_SHARES = (BLOOD_TEST, HOLTER)


def _form_data(demo: DemoShare, organisation: Organisation) -> dict[str, str]:
    data = {
        "patient_given_name": demo.given_name,
        "patient_family_name": demo.family_name,
        "patient_birth_date": demo.birth_date,
        "patient_ins": demo.ins,
        "patient_email": demo.email,
        "message": demo.message,
    }
    if demo.with_mobile and sms_directory() is not None:
        data["patient_mobile"] = DEMO_MOBILE
    if demo.allow_reply:
        data["allow_reply"] = "on"
    if demo.team:
        team = Mailbox.objects.get(organisation=organisation, kind=Mailbox.Kind.ORGANISATIONAL, name=demo.team)
        data["sender"] = team.address
    return data


def _create(user: User, demo: DemoShare, organisation: Organisation) -> PatientShare:
    form = ShareForm(_form_data(demo, organisation))
    if not form.is_valid():
        raise DemoContentError(f"demo share refused: {form.errors.as_json()}")
    with UploadBatch(document_rules().store) as batch:
        content = demo_pdf(demo.document_title, demo.document_lines)
        document = add_document(batch, demo.document_name, content, "application/pdf")
        share = services.create_share(user, form.share_input(), [document])
        batch.keep()
    return share


def seed_demo_shares(organisation: Organisation) -> list[PatientShare]:
    """Create the example shares once: nothing in production, for an organisation that is
    not a demo, or when it already has shares (a second run adds nothing)."""
    if settings.PLI_ENV != "development" or not organisation.is_demo:
        return []
    if PatientShare.objects.filter(organisation=organisation).exists():
        return []
    members = {u.email: u for u in User.objects.filter(memberships__organisation=organisation)}
    # All or nothing: a half-seeded demo would never be completed (seeding runs once).
    with transaction.atomic():
        return [_create(members[demo.practitioner], demo, organisation) for demo in DEMO_SHARES]


def format_demo_shares(organisation: Organisation) -> str:
    """The run command's note on the example shares, when the demo has them."""
    if not PatientShare.objects.filter(organisation=organisation).exists():
        return ""
    patients = " or ".join(f"{d.birth_date} ({d.given_name} {d.family_name})" for d in DEMO_SHARES)
    return (
        "Example patient shares are under Shares (Jeanne Martin; Paul Durand, from the Secrétariat,\n"
        "which Claire Petit follows too: Henri Exemple's reply reaches them both). Their e-mails and\n"
        "SMS appear at /dev/outbox/ once the background worker has sent them; to play the patient,\n"
        f"open a link there and give the birth date {patients}.\n"
    )
