"""Patient shares found by their patient: a blind index like the messages' (keyed tokens of
the names and INS, pli.messaging.search, kept on the share's row), filled here for the
shares made before it.

The formats are those of this point in time (pli.core.encryption, DataKey.context); the
historical models have no encryption methods, so the ciphertexts are opened here."""

from django.db import migrations, models

BATCH = 500
FIELDS = ("patient_family_name", "patient_given_name", "patient_ins")


def index_shares(apps, schema_editor):
    PatientShare = apps.get_model("sharing", "PatientShare")
    DataKey = apps.get_model("core", "DataKey")
    if not PatientShare.objects.exists():
        return
    from pli.core import keys
    from pli.crypto import open_sealed
    from pli.messaging import search

    ring = keys.keyring()
    last = None
    while True:
        batch = PatientShare.objects.filter(data_key__isnull=False).order_by("pk")
        if last is not None:
            batch = batch.filter(pk__gt=last)
        rows = list(batch.values_list("pk", "data_key_id", *FIELDS)[:BATCH])
        if not rows:
            return
        last = rows[-1][0]
        wrapped = dict(DataKey.objects.filter(pk__in=[row[1] for row in rows]).values_list("pk", "wrapped"))
        for pk, key_id, *sealed in rows:
            dek = ring.unwrap_data_key(bytes(wrapped[key_id]), b"datakey|" + key_id.bytes)
            plain = {
                name: open_sealed(dek, bytes(value), f"sharing.patientshare|{pk}|{name}".encode()).decode("utf-8")
                for name, value in zip(FIELDS, sealed)
                if value is not None
            }
            patient = {
                "family_name": plain.get("patient_family_name", ""),
                "given_names": plain.get("patient_given_name", ""),
                "ins": plain.get("patient_ins", ""),
            }
            tokens = search.message_tokens("", patient, search.SHARES_PURPOSE)
            PatientShare.objects.filter(pk=pk).update(search_tokens=f" {' '.join(tokens)} " if tokens else "")


class Migration(migrations.Migration):
    dependencies = [
        ("sharing", "0003_share_earlier_link"),
        ("core", "0002_purposekey"),
    ]

    operations = [
        migrations.AddField(
            model_name="patientshare",
            name="search_tokens",
            field=models.TextField(blank=True, default="", editable=False),
        ),
        migrations.RunPython(index_shares, migrations.RunPython.noop),
    ]
