"""Example messages for the demo organisation that `pli run` seeds (development only).

A newcomer who signs in should find a practice on an ordinary day rather than an empty
mailbox: a general practitioner asking the cardiologist for an opinion (with the patient
context and an ECG attached), the answer in the same thread, blood test results handed to
the shared secretariat mailbox, a note about the team meeting.

Everything goes the way a user's message goes: the compose form validates each one as if
typed in the page (addresses, INS, sex against the INS), the attachments are encrypted into
the store exactly as the upload handler writes them, :func:`services.send_message`
delivers, and reading goes through :func:`services.open_thread`/:func:`services.open_message`,
so the audit trail tells the same story as the mailboxes. Patients, INS and documents are
synthetic: each INS is valid but names a commune that does not exist (69999), and each PDF
says it is fictional.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from pli.accounts.models import Mailbox, Organisation, User
from pli.messaging import services
from pli.messaging.forms import ComposeForm
from pli.messaging.models import Delivery, Message
from pli.messaging.uploads import UploadSession, store_bytes

# The demo accounts of pli.accounts.demo.PEOPLE.
GP = "jeanne.martin@example.org"
CARDIOLOGIST = "paul.durand@example.org"
SECRETARY = "claire.petit@example.org"
SECRETARIAT = "Secrétariat"

FICTIONAL_FOOTER = "Document fictif, généré pour la démonstration de Pli."


class DemoContentError(RuntimeError):
    """Demo content that the real forms refuse: a bug in this module, never user input."""


# --- small PDFs -----------------------------------------------------------------------------


def _pdf_text(text: str) -> bytes:
    """A PDF literal string in WinAnsi (cp1252, which has the French letters), escaped so
    that the content stream stays ASCII."""
    out = bytearray(b"(")
    for byte in text.encode("cp1252"):
        if byte in b"()\\":
            out += b"\\" + bytes([byte])
        elif 32 <= byte < 127:
            out.append(byte)
        else:
            out += b"\\%03o" % byte
    return bytes(out + b")")


# Where the cells of a table row start, in points from the page's left edge.
_COLUMNS = (56, 230, 340)


def demo_pdf(title: str, lines: Sequence[str | tuple[str, ...]]) -> bytes:
    """A small, well-formed one-page A4 PDF: a title, lines of text (a tuple is a table row,
    its cells aligned in columns), and a footer saying the document is fictional."""
    commands = [b"BT /F2 15 Tf 56 780 Td " + _pdf_text(title) + b" Tj ET", b"BT /F1 11 Tf"]
    y = 748
    for line in lines:
        cells = (line,) if isinstance(line, str) else line
        for x, cell in zip(_COLUMNS, cells, strict=False):
            commands.append(b"1 0 0 1 %d %d Tm " % (x, y) + _pdf_text(cell) + b" Tj")
        y -= 16
    commands.append(b"ET")
    commands.append(b"BT /F1 8 Tf 56 40 Td " + _pdf_text(FICTIONAL_FOOTER) + b" Tj ET")
    stream = b"\n".join(commands)
    font = b"<</Type/Font/Subtype/Type1/BaseFont/%s/Encoding/WinAnsiEncoding>>"
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 4 0 R/Resources<</Font<</F1 5 0 R/F2 6 0 R>>>>>>",
        b"<</Length " + str(len(stream)).encode() + b">>stream\n" + stream + b"\nendstream",
        font % b"Helvetica",
        font % b"Helvetica-Bold",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer<</Size {len(objects) + 1}/Root 1 0 R>>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


# --- the content ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoPatient:
    """A synthetic patient: the INS is valid (python-stdnum's ``nir``) but names commune 999
    of the Rhône, which does not exist, so it is nobody's."""

    ins: str
    family_name: str
    given_names: str
    birth_date: str  # ISO
    sex: str

    def fields(self) -> dict[str, str]:
        return {
            "patient_ins": self.ins,
            "patient_family_name": self.family_name,
            "patient_given_names": self.given_names,
            "patient_birth_date": self.birth_date,
            "patient_sex": self.sex,
        }


CARDIOLOGY_PATIENT = DemoPatient("158046999900164", "Exemple", "Henri", "1958-04-12", "M")
LAB_PATIENT = DemoPatient("249096999900249", "Modèle", "Simone", "1949-09-23", "F")

MEETING_SUBJECT = "Réunion de cabinet jeudi à 12 h 30"
MEETING_BODY = """Bonjour à tous,

La réunion de cabinet aura lieu jeudi à 12 h 30 dans la salle de pause. Au programme : \
les congés d'été, le planning des gardes et la commande de matériel.

N'hésitez pas à m'envoyer d'autres sujets d'ici mercredi.

Bonne journée,
Claire Petit
Secrétariat"""

OPINION_SUBJECT = "Demande d'avis cardiologique — palpitations occasionnelles"
OPINION_BODY = """Cher confrère,

Je vous adresse M. Henri Exemple, que je suis pour une hypertension artérielle bien \
équilibrée. Il décrit depuis quelques semaines de brèves palpitations au repos, sans \
malaise ni douleur thoracique.

L'examen clinique est normal (TA 132/80, pouls régulier à 68/min). Vous trouverez ci-joint \
l'ECG de repos fait au cabinet, qui me paraît sans particularité.

Pourriez-vous me donner votre avis et, si besoin, le recevoir en consultation ?

Bien confraternellement,
Dr Jeanne Martin"""

ECG_NAME = "ECG de repos - H. Exemple.pdf"
ECG_TITLE = "ECG de repos — compte rendu"
ECG_LINES: tuple[str | tuple[str, ...], ...] = (
    "Cabinet de démonstration Pli — Lyon",
    "",
    "Patient : Henri EXEMPLE, né le 12/04/1958",
    "",
    "Rythme sinusal régulier, 68 battements par minute.",
    "PR 160 ms, QRS fins, QT normal.",
    "Pas de trouble de la repolarisation.",
    "",
    "Conclusion : ECG normal.",
    "",
    "Dr Jeanne Martin, médecine générale",
)

ANSWER_BODY = """Chère consœur,

Merci pour votre courrier. L'ECG est en effet normal, et le tableau évoque des \
extrasystoles bénignes, fréquentes et sans gravité.

Pour compléter, je propose un Holter ECG de 24 heures ; le secrétariat contactera \
M. Exemple pour un rendez-vous dans les prochaines semaines. Pas de changement de \
traitement d'ici là.

Bien confraternellement,
Dr Paul Durand
Cardiologie"""

RESULTS_SUBJECT = "Résultats de bilan sanguin à classer"
RESULTS_BODY = """Bonjour Claire,

Voici les résultats du bilan sanguin de contrôle de Mme Simone Modèle, reçus ce matin du \
laboratoire. Ils sont satisfaisants.

Pouvez-vous les classer dans son dossier et lui proposer un rendez-vous de suivi dans \
trois mois ?

Merci,
Dr Jeanne Martin"""

RESULTS_NAME = "Bilan sanguin - S. Modèle.pdf"
RESULTS_TITLE = "Compte rendu d'analyses de biologie médicale"
RESULTS_LINES: tuple[str | tuple[str, ...], ...] = (
    "Laboratoire d'analyses médicales (fictif) — Lyon",
    "",
    "Patiente : Simone MODÈLE, née le 23/09/1949",
    "Prescripteur : Dr Jeanne Martin",
    "",
    ("Analyse", "Résultat", "Valeurs de référence"),
    ("Hémoglobine", "13,4 g/dL", "12,0 - 16,0"),
    ("Glycémie à jeun", "0,92 g/L", "0,70 - 1,10"),
    ("Cholestérol LDL", "1,12 g/L", "< 1,60"),
    ("Créatinine", "68 µmol/L", "45 - 90"),
    "",
    "Résultats dans les valeurs de référence.",
)


@dataclass(frozen=True)
class DemoMessages:
    meeting: Message
    opinion: Message
    answer: Message
    results: Message

    def all(self) -> list[Message]:
        return [self.meeting, self.opinion, self.answer, self.results]


def _send(
    author: User,
    sender: Mailbox,
    to: Sequence[Mailbox],
    subject: str,
    body: str,
    *,
    patient: DemoPatient | None = None,
    in_reply_to: Message | None = None,
    attachment: tuple[str, bytes] | None = None,
) -> Message:
    data = {
        "sender": sender.address,
        "to": ", ".join(m.address for m in to),
        "subject": subject,
        "body": body,
        **(patient.fields() if patient is not None else {}),
    }
    if in_reply_to is not None:
        data["in_reply_to"] = str(in_reply_to.pk)
    with UploadSession() as session:
        uploads = []
        if attachment is not None:
            uploads.append(store_bytes(session, attachment[0], attachment[1], "application/pdf"))
        form = ComposeForm(data, user=author, uploads=uploads)
        if not form.is_valid():
            raise DemoContentError(f"demo message refused: {form.errors.as_json()}")
        return services.send_message(author, form.draft(), session=session)


def _personal_mailbox(user: User) -> Mailbox:
    return Mailbox.objects.get(owner=user, kind=Mailbox.Kind.PERSONAL, is_active=True)


def seed_demo_messages(organisation: Organisation) -> DemoMessages | None:
    """Send the example messages in the demo organisation's mailboxes, once: None in
    production, for an organisation that is not a demo, or when its mailboxes already hold
    messages (a second run adds nothing)."""
    if settings.PLI_ENV != "development" or not organisation.is_demo:
        return None
    mailboxes = Mailbox.objects.filter(organisation=organisation)
    if Delivery.objects.filter(mailbox__in=mailboxes).exists():
        return None
    members = {u.email: u for u in User.objects.filter(memberships__organisation=organisation)}
    gp, cardiologist, secretary = members[GP], members[CARDIOLOGIST], members[SECRETARY]
    gp_box, cardiology_box = _personal_mailbox(gp), _personal_mailbox(cardiologist)
    secretariat = mailboxes.get(kind=Mailbox.Kind.ORGANISATIONAL, name=SECRETARIAT)
    # All or nothing: a half-seeded demo would never be completed (seeding runs once).
    with transaction.atomic():
        meeting = _send(secretary, secretariat, [gp_box, cardiology_box], MEETING_SUBJECT, MEETING_BODY)
        services.open_message(gp, meeting.pk)
        opinion = _send(
            gp,
            gp_box,
            [cardiology_box],
            OPINION_SUBJECT,
            OPINION_BODY,
            patient=CARDIOLOGY_PATIENT,
            attachment=(ECG_NAME, demo_pdf(ECG_TITLE, ECG_LINES)),
        )
        # The cardiologist reads the request before answering it; the answer waits, unread,
        # in the general practitioner's inbox.
        services.open_thread(cardiologist, opinion.pk)
        answer = _send(
            cardiologist,
            cardiology_box,
            [gp_box],
            "Re: " + OPINION_SUBJECT,
            ANSWER_BODY,
            patient=CARDIOLOGY_PATIENT,
            in_reply_to=opinion,
        )
        results = _send(
            gp,
            gp_box,
            [secretariat],
            RESULTS_SUBJECT,
            RESULTS_BODY,
            patient=LAB_PATIENT,
            attachment=(RESULTS_NAME, demo_pdf(RESULTS_TITLE, RESULTS_LINES)),
        )
    return DemoMessages(meeting=meeting, opinion=opinion, answer=answer, results=results)


def format_demo_messages(organisation: Organisation) -> str:
    """The run command's note on the example messages, when the demo has them."""
    mailboxes = Mailbox.objects.filter(organisation=organisation)
    count = Message.objects.filter(deliveries__mailbox__in=mailboxes).distinct().count()
    if not count:
        return ""
    return (
        f"The demo mailboxes hold {count} example messages: sign in as Jeanne Martin for a\n"
        "cardiology opinion and its answer, as Claire Petit for blood test results in the Secrétariat.\n"
    )
