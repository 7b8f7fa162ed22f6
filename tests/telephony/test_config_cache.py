"""The per-process configuration cache (``voiceagents.configcache``) on the call set-up's path.

A warm process sets a call up without reading its number, agent, credentials or the carrier's
secrets again; a save or delete in this process applies to the next call at once; other writes
(``QuerySet.update()``, another process) within ``CONFIG_CACHE_SECONDS``. Counts are exact: the
webhooks' and ``start_call``'s own writes (the ``Call`` row, the token spend) stay queries.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from telephony.carriers.lifecycle import AGENT_DISABLED, NO_AGENT, NUMBER_DISABLED, UNKNOWN_NUMBER
from telephony.carriers.twilio import signature
from tests.fakes import telnyx as telnyx_fake
from tests.fakes import twilio as fake
from tests.telephony.conftest import create_credential
from voiceagents import configcache, dbthread, services
from voiceagents.audio.formats import AudioFormat, Encoding
from voiceagents.call import callsetup
from voiceagents.exceptions import CredentialDecryptionError
from voiceagents.models import Agent, Call, CallStatus, PhoneNumber

VOICE = reverse("telephony:twilio_voice")
TELNYX_WEBHOOK = reverse("telephony:telnyx_webhook")
FORM = "application/x-www-form-urlencoded"
TELNYX_KEY = telnyx_fake.keypair("config cache account")


def queries(fn) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        fn()
    return [query["sql"] for query in captured.captured_queries]


def post_voice_webhook(client, token: str = fake.AUTH_TOKEN) -> tuple[object, str]:
    """Post a signed incoming-call webhook; the response and the CallSid."""
    form = fake.voice_params()
    headers = {"X-Twilio-Signature": fake.sign(fake.PUBLIC_URL + VOICE, form, token)}
    response = client.post(VOICE, data=urlencode(form), content_type=FORM, headers=headers)
    return response, form["CallSid"]


def voice_webhook(client, token: str = fake.AUTH_TOKEN):
    """Post a signed incoming-call webhook; the response and the ``Call`` it made (or None)."""
    response, call_sid = post_voice_webhook(client, token)
    return response, Call.objects.filter(carrier_call_id=call_sid).first()


def start(call: Call) -> callsetup.CallContext:
    return callsetup.start_call(
        call.pk,
        stream_id=fake.new_sid("MZ"),
        carrier_format=AudioFormat(Encoding.MULAW, 8000),
        carrier_call_id=call.carrier_call_id,
    )


def new_call(agent: Agent | None) -> Call:
    return Call.objects.create(
        agent=agent, carrier="twilio", carrier_call_id=fake.new_sid("CA"), direction="inbound"
    )


def refusal(call: Call) -> str:
    with pytest.raises(callsetup.CallRejected) as rejected:
        start(call)
    return rejected.value.reason


# -- fewer queries once warm ------------------------------------------------------------------


def test_a_warm_voice_webhook_reads_neither_the_number_nor_the_auth_tokens(client, twilio_number):
    cold = queries(lambda: post_voice_webhook(client))
    warm = queries(lambda: post_voice_webhook(client))

    # Cold: the Twilio credentials (signature), the number with its agent and credential, then
    # the Call row's insert in its savepoint.
    assert len(cold) == 5
    assert len(warm) == 3
    assert not any(
        "voiceagents_phonenumber" in sql or "voiceagents_credential" in sql for sql in warm
    )
    assert "INSERT" in warm[1] and "voiceagents_call" in warm[1]


def test_with_the_cache_off_every_webhook_reads_again(client, twilio_number, voiceagents_settings):
    voiceagents_settings["CONFIG_CACHE_SECONDS"] = 0

    assert [len(queries(lambda: post_voice_webhook(client))) for _ in range(3)] == [5, 5, 5]


def test_a_warm_start_call_reads_only_the_call_itself(agent):
    first, second = new_call(agent), new_call(agent)

    cold = queries(lambda: start(first))
    warm = queries(lambda: start(second))

    # savepoint, the locked call, (cold: its agent with credentials), update, event, release
    assert len(cold) == 6
    assert len(warm) == 5
    locked = warm[1]
    assert locked.startswith("SELECT") and "voiceagents_agent" not in locked
    # Only the columns it needs, not the call's wide JSON and text ones.
    assert '"voiceagents_call"."metrics"' not in locked
    assert '"voiceagents_call"."error"' not in locked
    assert Call.objects.get(pk=second.pk).status == CallStatus.IN_PROGRESS


def test_a_warm_start_call_does_not_look_for_the_vendors_default_credential_again(db):
    create_credential("openai", "sk-default-openai-0001", is_default=True)
    agent = Agent.objects.create(name="Defaulted", slug="defaulted", provider="openai_realtime")

    first, second = new_call(agent), new_call(agent)

    cold = queries(lambda: start(first))
    warm_context = []
    warm = queries(lambda: warm_context.append(start(second)))

    assert (len(cold), len(warm)) == (7, 5)  # cold: + the agent, + the default credential
    assert warm_context[0].provider_config.api_key == "sk-default-openai-0001"


# -- the stream handshake on the event loop ---------------------------------------------------


def _handshake_scope(token: str = fake.AUTH_TOKEN) -> dict:
    headers = fake.handshake_headers(token)
    return {"type": "websocket", "path": fake.MEDIA_PATH, "query_string": b"", "headers": headers}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_connections")
async def test_a_warm_stream_handshake_check_needs_no_database_thread(twilio_credential):
    await signature.acheck_stream_handshake(_handshake_scope())  # a miss: the database thread

    busy, release = threading.Event(), threading.Event()

    def occupy():
        busy.set()
        release.wait(10)

    blocker = asyncio.ensure_future(dbthread.run(occupy))
    try:
        while not busy.is_set():
            await asyncio.sleep(0.001)
        # The database thread is taken: the check must not wait for it.
        await asyncio.wait_for(signature.acheck_stream_handshake(_handshake_scope()), 2)
        with pytest.raises(signature.WebhookValidationFailure):
            await asyncio.wait_for(
                signature.acheck_stream_handshake(_handshake_scope(fake.OTHER_AUTH_TOKEN)), 2
            )
    finally:
        release.set()
        await blocker


# -- what a save changes applies at once --------------------------------------------------------


def test_a_rotated_twilio_token_is_accepted_at_once_after_its_save(client, twilio_number):
    assert voice_webhook(client)[0].status_code == 200  # the old token, now cached

    credential = twilio_number.credential
    credential.secret = fake.OTHER_AUTH_TOKEN
    credential.save()

    assert voice_webhook(client, fake.OTHER_AUTH_TOKEN)[0].status_code == 200
    assert voice_webhook(client, fake.AUTH_TOKEN)[0].status_code == 403


def test_a_number_or_agent_changed_by_save_is_refused_at_once(client, twilio_number, agent):
    assert voice_webhook(client)[1].status == CallStatus.RINGING  # cached

    agent.enabled = False
    agent.save()
    assert voice_webhook(client)[1].end_reason == AGENT_DISABLED

    agent.enabled = True
    agent.save()
    twilio_number.enabled = False
    twilio_number.save()
    assert voice_webhook(client)[1].end_reason == NUMBER_DISABLED

    twilio_number.enabled = True
    twilio_number.agent = None
    twilio_number.save()
    assert voice_webhook(client)[1].end_reason == NO_AGENT

    twilio_number.delete()
    assert voice_webhook(client)[1].end_reason == UNKNOWN_NUMBER


def test_a_disabled_or_deleted_agent_is_refused_at_once_by_start_call(agent):
    start(new_call(agent))  # cached
    ringing = new_call(agent)

    agent.enabled = False
    agent.save()
    assert refusal(ringing) == "agent_disabled"
    assert Call.objects.get(pk=ringing.pk).end_reason == "agent_disabled"

    agent.enabled = True
    agent.save()
    start(new_call(agent))  # cached again
    orphan = new_call(agent)
    agent.delete()
    assert refusal(orphan) == "no_agent"


def test_a_credential_that_cannot_be_decrypted_fails_the_call_as_before(agent):
    start(new_call(agent))  # cached
    credential = agent.credential
    credential.encrypted_secret = "not-a-fernet-token"
    credential.save()

    with pytest.raises(CredentialDecryptionError):
        start(new_call(agent))


def test_a_telnyx_key_rotated_by_save_is_accepted_at_once(client, agent):
    old, new = TELNYX_KEY, telnyx_fake.keypair("config cache account, rotated")
    with telnyx_fake.FakeTelnyxAPI() as api:
        credential = create_credential(
            "telnyx",
            telnyx_fake.API_KEY,
            data={"webhook_public_key": old.public_b64},
            api_base_url=api.url,
        )
        PhoneNumber.objects.create(
            number=telnyx_fake.OUR_NUMBER, carrier="telnyx", credential=credential, agent=agent
        )
        initiated = lambda: telnyx_fake.call_initiated(telnyx_fake.new_call_control_id())  # noqa: E731
        cold = queries(lambda: telnyx_fake.post(client, initiated(), old))
        warm = queries(lambda: telnyx_fake.post(client, initiated(), old))
        # Cold: the keys, the event's claim (savepoint, insert, release), the number, the Call
        # row (savepoint, insert, release).
        assert (len(cold), len(warm)) == (8, 6)

        credential.data = {"webhook_public_key": new.public_b64}
        credential.save()
        assert telnyx_fake.post(client, initiated(), new).status_code == 200
        assert telnyx_fake.post(client, initiated(), old).status_code == 403


# -- what no signal announces: within the TTL ---------------------------------------------------


def test_an_update_without_signal_applies_after_the_ttl(agent, voiceagents_settings):
    voiceagents_settings["CONFIG_CACHE_SECONDS"] = 0.2
    start(new_call(agent))  # cached

    Agent.objects.filter(pk=agent.pk).update(enabled=False)  # no post_save
    start(new_call(agent))  # this process still trusts its copy...
    time.sleep(0.25)
    assert refusal(new_call(agent)) == "agent_disabled"  # ...for CONFIG_CACHE_SECONDS at most


def test_with_the_cache_off_an_update_applies_to_the_next_call(agent, voiceagents_settings):
    voiceagents_settings["CONFIG_CACHE_SECONDS"] = 0
    start(new_call(agent))

    Agent.objects.filter(pk=agent.pk).update(enabled=False)
    assert refusal(new_call(agent)) == "agent_disabled"


# -- private copies -----------------------------------------------------------------------------


def test_each_caller_gets_its_own_copy(twilio_number):
    first = services.inbound_number("twilio", fake.OUR_NUMBER)
    first.agent.name = "changed by one call"
    first.credential.data["account_sid"] = "AC-changed"

    second = services.inbound_number("twilio", fake.OUR_NUMBER)
    assert second.agent.name == "Front desk"
    assert second.credential.data["account_sid"] == fake.ACCOUNT_SID
    assert second is not first


def test_a_load_overtaken_by_a_save_is_not_kept(db):
    loads = []

    def load():
        loads.append(1)
        configcache.clear()  # what a save in another thread does during this read
        return "read before the save"

    key = ("test", uuid.uuid4().hex)
    assert configcache.get(key, load) == "read before the save"
    assert configcache.peek(key) is configcache.MISS
    configcache.get(key, load)
    assert len(loads) == 2
