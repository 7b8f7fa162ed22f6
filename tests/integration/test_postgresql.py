"""The data model's partial unique constraints hold on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from voiceagents.models import Call, Credential


def _violated_constraint(excinfo) -> str | None:
    cause = excinfo.value.__cause__
    return getattr(getattr(cause, "diag", None), "constraint_name", None)


@pytest.mark.integration
@pytest.mark.django_db
def test_partial_unique_constraints_on_postgresql(postgres_database_url):
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        names = {
            *connection.introspection.get_constraints(cursor, Call._meta.db_table),
            *connection.introspection.get_constraints(cursor, Credential._meta.db_table),
        }
    assert {
        "voiceagents_unique_carrier_call_id",
        "voiceagents_one_default_credential_per_vendor",
    } <= names

    def call(carrier, carrier_call_id):
        return Call.objects.create(
            carrier=carrier, carrier_call_id=carrier_call_id, direction="inbound"
        )

    call("twilio", "CA0123")
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        call("twilio", "CA0123")
    assert _violated_constraint(excinfo) == "voiceagents_unique_carrier_call_id"
    call("telnyx", "CA0123")  # the same id at another carrier is another call
    call("twilio", "")  # calls without a carrier id yet: any number of them
    call("twilio", "")
    assert Call.objects.filter(carrier="twilio", carrier_call_id="").count() == 2

    Credential.objects.create(vendor="openai", label="first", is_default=True)
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        Credential.objects.create(vendor="openai", label="second", is_default=True)
    assert _violated_constraint(excinfo) == "voiceagents_one_default_credential_per_vendor"
    Credential.objects.create(vendor="openai", label="not default", is_default=False)
    Credential.objects.create(vendor="openai", label="not default either", is_default=False)
    Credential.objects.create(vendor="deepgram", label="default of another vendor", is_default=True)
    assert Credential.objects.filter(is_default=True).count() == 2
