from django.db import migrations

from pli.audit import guard
from pli.audit.chain import GENESIS_HASH


def create_head(apps, schema_editor):
    AuditHead = apps.get_model("audit", "AuditHead")
    AuditHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": GENESIS_HASH})


def create_guard(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        guard.create(cursor, schema_editor.connection.vendor)


def drop_guard(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        guard.drop(cursor, schema_editor.connection.vendor)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunPython(create_head, migrations.RunPython.noop),
        migrations.RunPython(create_guard, drop_guard),
    ]
