"""A vendor, a provider, a pipeline stage and a carrier registered from test code only.

They validate on the models, show in the admin and configure a call, with no migration and no
edit under voiceagents/ or telephony/: the registries are the one place that knows them.
"""

from __future__ import annotations

import io
import uuid

import pytest
from django.core.management import call_command
from django.core.validators import RegexValidator
from django.urls import reverse

from tests.voiceagents.factories import make_credential
from voiceagents.audio.formats import AudioFormat, Encoding
from voiceagents.call import callsetup
from voiceagents.carriers import CarrierSpec, carriers
from voiceagents.datafields import DataField
from voiceagents.models import Agent, Call, Credential, PhoneNumber
from voiceagents.providers import ProviderSpec, StageSpec, providers
from voiceagents.providers.options import PIPELINE_OPTIONS
from voiceagents.providers.stages import stt_stages
from voiceagents.vendors import VendorSpec, vendors

pytestmark = pytest.mark.django_db

DUMMY_VENDOR = VendorSpec(
    id="dummy",
    name="Dummy Voice Co",
    secret_help="A dummy token.",
    data_fields=(
        DataField(
            key="account",
            label="Account",
            required=True,
            validators=(RegexValidator(r"^acct-\d+$", "Enter acct- and digits."),),
        ),
    ),
)
DUMMY_PROVIDER = ProviderSpec(
    id="dummy",
    name="Dummy Voice",
    vendor="dummy",
    default_url="wss://voice.dummy.test/v1",
    default_model="dummy-1",
    default_voice="calm",
    runtime="voiceagents.providers.base.VoiceProvider",
)
DUMMY_PIPELINE = ProviderSpec(
    id="dummy_pipeline",
    name="Dummy pipeline",
    stages=("stt", "reply", "tts"),
    options=PIPELINE_OPTIONS,
    runtime="voiceagents.providers.base.VoiceProvider",
)
DUMMY_STT = StageSpec(
    id="dummy_stt", name="Dummy STT", vendor="dummy", default_url="wss://stt.dummy.test"
)
DUMMY_CARRIER = CarrierSpec(
    id="dummy",
    name="Dummy Tel",
    vendor="dummy",
    number_fields=(
        DataField(key="region", label="Region", choices=(("eu", "EU"), ("us", "US")), default="eu"),
    ),
)
REGISTRATIONS = [
    (vendors, DUMMY_VENDOR),
    (providers, DUMMY_PROVIDER),
    (providers, DUMMY_PIPELINE),
    (stt_stages, DUMMY_STT),
    (carriers, DUMMY_CARRIER),
]


@pytest.fixture
def dummy():
    for registry, spec in REGISTRATIONS:
        registry.register(spec)
    yield
    for registry, spec in REGISTRATIONS:
        registry.unregister(spec.id)


def dummy_credential(**fields) -> Credential:
    fields.setdefault("data", {"account": "acct-7"})
    return make_credential("dummy", **fields)


def errors_of(row) -> dict[str, list[str]]:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as excinfo:
        row.full_clean()
    return excinfo.value.message_dict


def test_a_registered_vendor_validates_its_credential_data(dummy):
    credential = dummy_credential()
    assert credential.data == {"account": "acct-7"}

    bad = Credential(vendor="dummy", label="bad", data={"account": "7"}, encrypted_secret="x")
    assert errors_of(bad) == {"data": ["Account: Enter acct- and digits."]}
    bad.data = {"account": "acct-1", "region": "eu"}
    assert errors_of(bad)["data"] == ["region: unknown field; this vendor has: account"]
    bad.data = {}
    assert errors_of(bad)["data"] == ["Account: is required"]


def test_a_registered_provider_and_carrier_validate_on_agents_and_numbers(dummy):
    keyless = Agent(name="D", slug="d", provider="dummy")
    keyless.full_clean()  # saved without a key, it says calls will fail until there is one
    assert keyless.missing_keys() == [
        "Dummy Voice has no Dummy Voice Co key: calls will fail until you add a credential from "
        "Dummy Voice Co or set DUMMY_API_KEY."
    ]
    credential = dummy_credential()
    agent = Agent(name="D", slug="d", provider="dummy")
    agent.full_clean()  # the lone dummy credential is the vendor's default
    assert agent.credential_for("provider") == credential
    assert (agent.effective_model(), agent.effective_voice()) == ("dummy-1", "calm")

    number = PhoneNumber(number="+14155550123", carrier="dummy", credential=credential)
    number.full_clean()
    assert number.carrier_data == {"region": "eu"}
    number.carrier_data = {"region": "mars"}
    assert errors_of(number) == {"carrier_data": ["Region: must be one of eu, us"]}
    number.carrier_data = {}
    number.credential = make_credential("twilio")
    assert errors_of(number) == {"credential": ["Choose a Dummy Tel credential."]}


def test_unregistered_ids_are_refused_again(dummy):
    for registry, spec in REGISTRATIONS:
        registry.unregister(spec.id)
    errors = errors_of(Agent(name="D", slug="d", provider="dummy"))
    assert list(errors) == ["provider"]


def test_registering_needs_no_migration(dummy):
    out = io.StringIO()
    call_command("makemigrations", "voiceagents", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_the_admin_offers_registered_entries_and_stores_their_data(dummy, admin_client):
    agent_page = admin_client.get(reverse("admin:voiceagents_agent_add")).content.decode()
    assert '<option value="dummy">Dummy Voice</option>' in agent_page
    assert '<option value="dummy_stt">Dummy STT</option>' in agent_page

    response = admin_client.post(
        reverse("admin:voiceagents_credential_add"),
        {
            "vendor": "dummy",
            "label": "via admin",
            "secret": "dummy-token-0001",
            "dummy__account": "7",
        },
    )
    assert response.context["adminform"].form.errors == {
        "dummy__account": ["Enter acct- and digits."]
    }
    response = admin_client.post(
        reverse("admin:voiceagents_credential_add"),
        {
            "vendor": "dummy",
            "label": "via admin",
            "secret": "dummy-token-0001",
            "dummy__account": "acct-9",
        },
    )
    assert response.status_code == 302
    credential = Credential.objects.get(label="via admin")
    assert credential.data == {"account": "acct-9"}

    change = admin_client.get(reverse("admin:voiceagents_credential_change", args=[credential.pk]))
    assert 'value="acct-9"' in change.content.decode()

    response = admin_client.post(
        reverse("admin:voiceagents_phonenumber_add"),
        {
            "number": "+14155550124",
            "carrier": "dummy",
            "credential": str(credential.pk),
            "enabled": "on",
            "dummy__region": "us",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert PhoneNumber.objects.get(number="+14155550124").carrier_data == {"region": "us"}


def _start(agent: Agent) -> callsetup.CallContext:
    call_sid = f"CA{uuid.uuid4().hex}"
    call = Call.objects.create(
        agent=agent, carrier="twilio", carrier_call_id=call_sid, direction="inbound"
    )
    return callsetup.start_call(
        call.pk,
        stream_id="MZ1",
        carrier_format=AudioFormat(Encoding.MULAW, 8000),
        carrier_call_id=call_sid,
    )


def test_the_call_config_comes_from_the_spec_settings_and_credential(dummy, voiceagents_settings):
    credential = dummy_credential(secret="dummy-key-1234567890")
    agent = Agent.objects.create(name="D", slug="d", provider="dummy", credential=credential)

    config = _start(agent).provider_config
    assert (config.api_key, config.base_url) == (
        "dummy-key-1234567890",
        "wss://voice.dummy.test/v1",
    )
    assert (config.model, config.voice, config.stages) == ("dummy-1", "calm", {})

    voiceagents_settings["DUMMY_URL"] = "wss://proxy.example.test/dummy"
    voiceagents_settings["DUMMY_MODEL"] = "dummy-2"
    assert _start(agent).provider_config.base_url == "wss://proxy.example.test/dummy"
    assert _start(agent).provider_config.model == "dummy-2"

    credential.api_base_url = "wss://eu.dummy.test/v1"
    credential.save()
    assert _start(agent).provider_config.base_url == "wss://eu.dummy.test/v1"


def test_a_pipeline_gets_each_stage_service_and_key(dummy, voiceagents_settings):
    dummy_key = dummy_credential(secret="dummy-stt-key-0000000")
    tts_key = make_credential("elevenlabs", secret="xi-key-0000000000000")
    agent = Agent.objects.create(
        name="P",
        slug="p",
        provider="dummy_pipeline",
        stt_provider="dummy_stt",
        stt_language="fr",
        tts_provider="elevenlabs",
        tts_voice="adam",
        reply_handler="anything",
    )
    voiceagents_settings["ELEVENLABS_URL"] = "wss://tts.proxy.test"
    voiceagents_settings["DUMMY_STT_MODEL"] = "dummy-stt-2"

    config = _start(agent).provider_config

    assert (config.api_key, config.base_url) == ("", "")
    stt, reply, tts = (config.stages[s] for s in ("stt", "reply", "tts"))
    assert (stt.id, stt.api_key, stt.base_url, stt.language, stt.model) == (
        "dummy_stt",
        dummy_key.secret,
        "wss://stt.dummy.test",
        "fr",
        "dummy-stt-2",
    )
    assert (reply.id, reply.handler, reply.api_key) == ("", "anything", "")
    assert (tts.id, tts.api_key, tts.base_url, tts.voice, tts.model) == (
        "elevenlabs",
        tts_key.secret,
        "wss://tts.proxy.test",
        "adam",
        "eleven_flash_v2_5",
    )

    # Saved (as the admin does): a save reaches this process's configuration cache at once.
    agent.provider_options = {"tts_model": "eleven_v3"}
    agent.save(update_fields=["provider_options"])
    assert _start(agent).provider_config.stages["tts"].model == "eleven_v3"


def test_the_reply_prompt_is_filled_from_the_agent_and_call_variables(dummy):
    make_credential("openai", secret="sk-openai-key-000000000")
    dummy_credential(secret="dummy-stt-key-0000000")
    make_credential("elevenlabs", secret="xi-key-0000000000000")
    agent = Agent.objects.create(
        name="P",
        slug="p",
        provider="dummy_pipeline",
        stt_provider="dummy_stt",
        tts_provider="elevenlabs",
        reply_prompt="You answer for {company}; the caller is {caller_number}.",
        variables={"company": "Acme"},
    )
    reply = _start(agent).provider_config.stages["reply"]
    assert reply.instructions == 'You answer for Acme; the caller is "".'  # quoted, even empty


def test_a_blank_reply_model_takes_the_chat_model_setting(dummy, voiceagents_settings):
    make_credential("openai", secret="sk-openai-key-000000000")
    dummy_credential(secret="dummy-stt-key-0000000")
    make_credential("elevenlabs", secret="xi-key-0000000000000")
    fields = dict(
        provider="dummy_pipeline",
        stt_provider="dummy_stt",
        tts_provider="elevenlabs",
        reply_prompt="Be brief.",
    )
    agent = Agent.objects.create(name="P", slug="p", **fields)
    assert _start(agent).provider_config.stages["reply"].model == "gpt-4o-mini"  # the spec's
    voiceagents_settings["OPENAI_CHAT_MODEL"] = "gpt-4.1-mini"
    other = Agent.objects.create(name="Q", slug="q", **fields)
    assert _start(other).provider_config.stages["reply"].model == "gpt-4.1-mini"
    chosen = Agent.objects.create(name="R", slug="r", reply_model="gpt-4o", **fields)
    assert _start(chosen).provider_config.stages["reply"].model == "gpt-4o"
