from __future__ import annotations

from typing import Any

from rest_framework import serializers

from pli.accounts.models import Mailbox, Membership


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
