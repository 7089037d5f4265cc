"""On PostgreSQL the rate counters skip the write-ahead log: they are worth nothing after a
crash (counting restarts from zero), and every API request updates one."""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def unlogged(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE pli_api_rate_counter SET UNLOGGED")


def logged(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE pli_api_rate_counter SET LOGGED")


class Migration(migrations.Migration):
    dependencies = [("api", "0002_rate_counter")]

    operations = [migrations.RunPython(unlogged, logged)]
