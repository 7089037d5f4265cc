"""Patient replies delivered before messages had an external sender showed "(deleted
mailbox)": give each one the patient as its sender, sealed under the message's own key
(the name comes from the message's patient context, sealed under that same key).

The formats are those of this point in time (pli.core.encryption, DataKey.context); the
historical models have no encryption methods, so the ciphertexts are handled here."""

import json

from django.db import migrations

BATCH = 500


def name_patient_senders(apps, schema_editor):
    ShareReply = apps.get_model("sharing", "ShareReply")
    Message = apps.get_model("messaging", "Message")
    DataKey = apps.get_model("core", "DataKey")
    message_ids = list(ShareReply.objects.values_list("message_id", flat=True))
    if not message_ids:
        return
    from pli.core import keys
    from pli.crypto import open_sealed, seal

    ring = keys.keyring()
    for start in range(0, len(message_ids), BATCH):
        rows = Message.objects.filter(
            pk__in=message_ids[start : start + BATCH],
            sender__isnull=True,
            external_sender__isnull=True,
            data_key__isnull=False,
        ).values_list("pk", "patient", "data_key_id")
        for pk, sealed_patient, key_id in rows:
            data_key = DataKey.objects.get(pk=key_id)
            dek = ring.unwrap_data_key(bytes(data_key.wrapped), b"datakey|" + data_key.id.bytes)
            name = ""
            if sealed_patient is not None:
                patient = json.loads(open_sealed(dek, bytes(sealed_patient), f"messaging.message|{pk}|patient".encode()))
                name = " ".join(filter(None, [patient.get("given_names", ""), patient.get("family_name", "")]))
            value = json.dumps({"kind": "patient_link", "name": name}, separators=(",", ":"), ensure_ascii=False)
            sealed = seal(dek, value.encode("utf-8"), f"messaging.message|{pk}|external_sender".encode())
            Message.objects.filter(pk=pk).update(external_sender=sealed)


class Migration(migrations.Migration):
    dependencies = [
        ("sharing", "0001_initial"),
        ("messaging", "0002_message_external_sender"),
        ("core", "0002_purposekey"),
    ]

    operations = [
        migrations.RunPython(name_patient_senders, migrations.RunPython.noop),
    ]
