from __future__ import annotations

import datetime
from typing import Any

from rest_framework import serializers

from pli.accounts.models import Mailbox, Membership


class UTCDateTimeField(serializers.DateTimeField):
    """A time in UTC, as every time the API gives (``2026-11-29T23:34:02.119146+00:00``):
    DRF's field gives the server's time zone, so shares and messages disagreed."""

    def to_representation(self, value: datetime.datetime | None) -> str | None:  # type: ignore[override]
        return value.astimezone(datetime.UTC).isoformat() if value is not None else None


class MeOrganisationSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    slug = serializers.CharField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class MeMailboxSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    address = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Mailbox.Kind.choices)


class MeSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    profession = serializers.CharField()
    specialty = serializers.CharField()
    rpps = serializers.CharField(allow_null=True)
    organisations = MeOrganisationSerializer(many=True)
    mailboxes = MeMailboxSerializer(many=True)
