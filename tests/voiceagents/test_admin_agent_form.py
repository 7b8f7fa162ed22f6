"""The agent form through the admin: each validator's own message, each service's choices, the
key fallback stated on the page, the fields of other voice architectures left alone, and the
demo agents saved again as their page shows them."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.forms.models import model_to_dict
from django.utils.html import escape

from tests.voiceagents.factories import make_agent, make_credential
from tests.voiceagents.test_admin import (
    REPLY_HANDLER_NAME,
    admin_url,
    agent_form_data,
    management_form_data,
    post_agent_add,
)
from voiceagents.call.callsetup import _service_account, agent_setup
from voiceagents.models import Agent
from voiceagents.providers import ProviderSpec, providers
from voiceagents.providers.stages import OPENAI_REALTIME_VOICES

pytestmark = pytest.mark.django_db

KEY_VARIABLES = ("OPENAI_API_KEY", "ELEVENLABS_API_KEY", "DEEPGRAM_API_KEY")
#: An ElevenLabs voice ID that is in no list: 20 letters and digits.
VOICE_ID = "Zx9voiceIdOfMyOwn001"


@pytest.fixture(autouse=True)
def no_key_variables(monkeypatch):
    """No vendor key in the environment unless a test sets one."""
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# -- reading the page as a browser would ------------------------------------------------------


class _Form(HTMLParser):
    """What the agent form's page would post unchanged: each input's value (checked boxes
    only), each select's selected option (else its first), each textarea's text."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._first: str | None = None
        self._textarea: str | None = None
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == "agent_form":
            self._in_form = True
        if not self._in_form:
            return
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "button"):
            if attrs.get("type") != "checkbox" or "checked" in attrs:
                self.values[name] = attrs.get("value") or ("on" if "checked" in attrs else "")
        elif tag == "select" and name:
            self._select, self._first = name, None
        elif tag == "option" and self._select:
            value = attrs.get("value", "")
            if self._first is None:
                self._first = value
                self.values.setdefault(self._select, value)
            if "selected" in attrs:
                self.values[self._select] = value
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form":
            self._in_form = False

    def handle_data(self, data):
        if self._textarea:
            if not self.values[self._textarea]:
                data = data.removeprefix("\n")  # as browsers do, after <textarea>
            self.values[self._textarea] += data


def page_form(response) -> dict[str, str]:
    parser = _Form()
    parser.feed(response.content.decode())
    return parser.values


def options_of(html: str, select: str, group: str) -> list[str]:
    """The option values of ``group``'s optgroup in the select named ``select``."""
    body = re.search(rf'<select name="{select}".*?</select>', html, re.S).group(0)
    optgroup = re.search(rf'<optgroup [^>]*data-group="{group}".*?</optgroup>', body, re.S)
    return re.findall(r'<option value="([^"]*)"', optgroup.group(0))


def selected_of(html: str, select: str) -> list[str]:
    body = re.search(rf'<select name="{select}".*?</select>', html, re.S).group(0)
    return re.findall(r'<option value="([^"]*)"[^>]*\sselected', body)


def form_errors(response) -> dict[str, list[str]]:
    return {k: list(v) for k, v in response.context["adminform"].form.errors.items()}


def post_change(client, agent, **overrides):
    url = admin_url("agent", "change", agent.pk)
    page = client.get(url)
    return client.post(url, {**page_form(page), **overrides, "_continue": "Save"})


# -- every validator's own message, shown next to its field -----------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"variables": '{"company name": 1}'},
            "variables",
            "Variable name 'company name' must be letters, digits and underscores "
            "(e.g. company_name).",
        ),
        (
            {"variables": '{"company": true}'},
            "variables",
            "Variable 'company' must be text or a number.",
        ),
        (
            {"variables": '["Acme"]'},
            "variables",
            'Enter the variables in curly braces, e.g. {"company": "Acme"}.',
        ),
        ({"variables": '{"company": '}, "variables", "Enter a valid JSON."),
        (
            {"transfer_allowlist": '["555-1234"]'},
            "transfer_allowlist",
            "Not in E.164 format ('+', country code and number, e.g. +14155550100): 555-1234",
        ),
        (
            {"transfer_allowlist": '"+14155550100"'},
            "transfer_allowlist",
            'Enter a list of numbers in square brackets, e.g. ["+14155550100"].',
        ),
        (
            {"language": "english please"},
            "language",
            "Enter a BCP-47 language tag, e.g. 'en', 'en-US' or 'pt-BR'.",
        ),
        (
            {"model": "gpt realtime"},
            "model",
            "Enter a model name without spaces, e.g. 'gpt-realtime-mini' or 'eleven_flash_v2_5'.",
        ),
        (
            {"voice": "nonsense-voice"},
            "voice",
            "OpenAI Realtime has no voice “nonsense-voice”: choose one of "
            + ", ".join(OPENAI_REALTIME_VOICES)
            + ".",
        ),
        (
            {"provider": "elevenlabs_convai", "voice": "__other__", "voice_other": "Nobody"},
            "voice",
            "Unknown ElevenLabs voice 'Nobody': use a voice ID (20 letters and digits, from your "
            "ElevenLabs voice library) or one of these names: rachel,",
        ),
        (
            {
                "provider": "pipeline",
                "stt_provider": "local",
                "tts_provider": "openai_tts",
                "tts_voice": "nonsense-voice",
                "reply_handler": REPLY_HANDLER_NAME,
            },
            "tts_voice",
            "OpenAI TTS has no voice “nonsense-voice”: choose one of alloy,",
        ),
        (
            {
                "provider": "pipeline",
                "stt_provider": "local",
                "tts_provider": "local",
                "reply_prompt": "Be brief.",
                "reply_model": "gpt 4o",
            },
            "reply_model",
            "Enter a model name without spaces",
        ),
    ],
    ids=[
        "variable-name",
        "variable-value",
        "variables-not-an-object",
        "variables-not-json",
        "allowlist-not-e164",
        "allowlist-not-a-list",
        "language",
        "model-name",
        "realtime-voice",
        "elevenlabs-voice",
        "openai-tts-voice",
        "reply-model-name",
    ],
)
def test_each_validator_shows_its_own_message_next_to_its_field(
    admin_client, fields, field, message
):
    make_credential("openai")
    make_credential("elevenlabs")

    response = post_agent_add(admin_client, **fields)

    assert response.status_code == 200
    errors = form_errors(response)
    assert list(errors) == [field]
    assert errors[field][0].startswith(message)
    # Shown in the error list the admin renders next to that field.
    shown = re.search(
        rf'<ul class="errorlist" id="id_{field}_error"><li>(.*?)</li>', response.content.decode()
    )
    assert shown and shown.group(1).startswith(escape(message))
    assert not Agent.objects.exists()


def test_a_project_provider_that_takes_only_its_models_refuses_others(admin_client):
    fixed = ProviderSpec(
        id="tests_fixed_voice",
        name="Fixed Voice",
        suggested_models=("fixed-1",),
        suggested_voices=("calm",),
        custom_models=False,
        runtime="voiceagents.providers.base.VoiceProvider",
    )
    providers.register(fixed)
    try:
        page = admin_client.get(admin_url("agent", "add")).content.decode()
        assert options_of(page, "model", "tests_fixed_voice") == ["fixed-1"]  # no "Other…"
        assert options_of(page, "voice", "tests_fixed_voice") == ["calm", "__other__"]
        response = post_agent_add(
            admin_client, provider="tests_fixed_voice", model="__other__", model_other="fixed-2"
        )
        assert form_errors(response) == {
            "model": ["Fixed Voice has no model “fixed-2”: choose one of fixed-1."]
        }
        response = post_agent_add(admin_client, provider="tests_fixed_voice", model="fixed-1")
        assert response.status_code == 302
    finally:
        providers.unregister(fixed.id)


# -- each service's models and voices as choices ----------------------------------------------


def test_voices_and_models_are_each_services_choices_with_other_where_it_takes_its_own(
    admin_client,
):
    page = admin_client.get(admin_url("agent", "add")).content.decode()

    # Realtime offers its voices only: none of the speech endpoint's fable, onyx, nova.
    assert options_of(page, "voice", "openai_realtime") == list(OPENAI_REALTIME_VOICES)
    assert options_of(page, "model", "openai_realtime") == [
        "gpt-realtime-mini",
        "gpt-realtime",
        "__other__",
    ]
    elevenlabs = options_of(page, "voice", "elevenlabs_convai")
    assert elevenlabs[:2] == ["rachel", "adam"] and elevenlabs[-1] == "__other__"
    assert options_of(page, "tts_voice", "openai_tts")[-1] == "cedar"  # no "Other…"
    assert options_of(page, "tts_voice", "elevenlabs")[-1] == "__other__"
    assert options_of(page, "reply_model", "openai_chat")[-1] == "__other__"
    assert 'data-group="pipeline"' not in page  # the pipeline has no model or voice of its own
    assert selected_of(page, "voice") == [""]
    assert "Default (alloy)" in page and "Default (gpt-realtime-mini)" in page


def test_a_voice_id_typed_as_other_is_saved_and_stays_selected(admin_client):
    credential = make_credential("elevenlabs")

    response = post_agent_add(
        admin_client,
        provider="elevenlabs_convai",
        credential=str(credential.pk),
        voice="__other__",
        voice_other=VOICE_ID,
    )

    assert response.status_code == 302, form_errors(response)
    agent = Agent.objects.get()
    assert agent.voice == VOICE_ID
    page = admin_client.get(admin_url("agent", "change", agent.pk)).content.decode()
    assert selected_of(page, "voice") == [VOICE_ID]


def test_seed_names_stay_accepted_and_the_page_says_what_calls_send(admin_client):
    make_credential("openai")

    response = post_agent_add(
        admin_client, model="__other__", model_other="gpt-4o-mini-realtime-preview", voice="nova"
    )

    assert response.status_code == 302, form_errors(response)
    agent = Agent.objects.get()
    assert (agent.model, agent.voice) == ("gpt-4o-mini-realtime-preview", "nova")
    page = admin_client.get(admin_url("agent", "change", agent.pk)).content.decode()
    assert selected_of(page, "voice") == ["nova"]  # kept selectable although no longer listed
    assert selected_of(page, "model") == ["gpt-4o-mini-realtime-preview"]
    assert escape("OpenAI Realtime no longer takes the voice “nova”: calls use “marin”.") in page
    assert (
        escape(
            "OpenAI Realtime no longer takes the model “gpt-4o-mini-realtime-preview”: calls use "
            "“gpt-realtime-mini”."
        )
        in page
    )


def test_the_page_speaks_the_operators_words(admin_client):
    page = admin_client.get(admin_url("agent", "add")).content.decode()

    for jargon in ("seed", "Patter.", "phone.agent", "on_message", "socket", "µ-law"):
        assert jargon not in page, jargon


# -- the key fallback, stated on the page -----------------------------------------------------


def key_note(html: str, field: str, service: str) -> str:
    """The line about ``service`` in the help of the credential ``field``, as text."""
    help_text = re.search(rf'id="id_{field}_helptext">(.*?)</div>', html, re.S).group(1)
    note = re.search(rf'<li data-controller="[a-z_]+" data-when="{service}">(.*?)</li>', help_text)
    return re.sub(r"<[^>]+>", "", note.group(1))


@pytest.mark.parametrize(
    ("source", "note"),
    [
        ("settings", "using OPENAI_API_KEY from settings.VOICEAGENTS"),
        ("environment", "using OPENAI_API_KEY from the environment"),
        ("credential", "using the default OpenAI credential “Main OpenAI”"),
    ],
)
def test_a_realtime_agent_saves_with_the_key_from_settings_env_or_a_credential_row(
    admin_client, voiceagents_settings, monkeypatch, source, note
):
    if source == "settings":
        voiceagents_settings["OPENAI_API_KEY"] = "sk-settings-0001"
    elif source == "environment":
        monkeypatch.setenv("OPENAI_API_KEY", "sk-env-0001")
    else:
        make_credential("openai", label="Main OpenAI", secret="sk-row-0001")

    response = post_agent_add(admin_client)

    assert response.status_code == 302, form_errors(response)
    assert [m.level_tag for m in get_messages(response.wsgi_request)] == ["success"]
    agent = Agent.objects.get()
    assert agent.credential is None
    page = admin_client.get(admin_url("agent", "change", agent.pk)).content.decode()
    assert key_note(page, "credential", "openai_realtime") == (
        f"OpenAI Realtime: when blank, {note}."
    )
    # What the page says is the key calls send.
    key, _url = _service_account(agent_setup(agent.pk), "provider", agent.spec)
    assert key == {"settings": "sk-settings-0001", "environment": "sk-env-0001"}.get(
        source, "sk-row-0001"
    )


def test_an_agent_without_any_key_saves_with_a_warning_that_calls_will_fail(admin_client):
    response = post_agent_add(admin_client, provider="elevenlabs_convai", voice="rachel")

    assert response.status_code == 302, form_errors(response)
    warnings = [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    assert warnings == [
        "Front desk: ElevenLabs Conversational AI has no ElevenLabs key: calls will fail until "
        "you add a credential from ElevenLabs or set ELEVENLABS_API_KEY."
    ]
    agent = Agent.objects.get()
    page = admin_client.get(admin_url("agent", "change", agent.pk)).content.decode()
    assert key_note(page, "credential", "elevenlabs_convai") == (
        "ElevenLabs Conversational AI: when blank, no ElevenLabs key: calls will fail until you "
        "add a credential from ElevenLabs or set ELEVENLABS_API_KEY."
    )


def test_pipeline_stages_state_each_ones_key_source(
    admin_client, voiceagents_settings, monkeypatch
):
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-env-0001")
    voiceagents_settings["ELEVENLABS_API_KEY"] = "xi-settings-0001"

    response = post_agent_add(
        admin_client,
        provider="pipeline",
        stt_provider="deepgram",
        tts_provider="elevenlabs",
        reply_prompt="Answer in one sentence.",
        reply_provider="openai_chat",
    )

    assert response.status_code == 302, form_errors(response)
    warnings = [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    assert warnings == [
        "Front desk: OpenAI Chat Completions has no OpenAI key: calls will fail until you add a "
        "credential from OpenAI or set OPENAI_API_KEY."
    ]
    agent = Agent.objects.get()
    page = admin_client.get(admin_url("agent", "change", agent.pk)).content.decode()
    assert key_note(page, "stt_credential", "deepgram") == (
        "Deepgram (streaming): when blank, the credential above if it is from Deepgram, else "
        "using DEEPGRAM_API_KEY from the environment."
    )
    assert key_note(page, "tts_credential", "elevenlabs").endswith(
        "else using ELEVENLABS_API_KEY from settings.VOICEAGENTS."
    )
    assert key_note(page, "tts_credential", "local") == "Offline (eSpeak NG): needs no key."
    assert key_note(page, "reply_credential", "openai_chat").endswith(
        "else no OpenAI key: calls will fail until you add a credential from OpenAI or set "
        "OPENAI_API_KEY."
    )
    assert (
        _service_account(agent_setup(agent.pk), "stt", agent.stage_spec("stt"))[0] == "dg-env-0001"
    )
    assert (
        _service_account(agent_setup(agent.pk), "tts", agent.stage_spec("tts"))[0]
        == "xi-settings-0001"
    )


# -- the fields of other voice architectures --------------------------------------------------


def test_a_realtime_agent_ignores_the_pipeline_fields_and_keeps_their_values(admin_client):
    agent = make_agent(stt_language="fr", reply_model="gpt-4o")

    response = post_change(
        admin_client,
        agent,
        stt_provider="no-such-stage",
        stt_language="not a language",
        reply_model="not a model",
        tts_voice="nonsense-voice",
        system_prompt="Be brief.",
    )

    assert response.status_code == 302, form_errors(response)
    agent.refresh_from_db()
    assert agent.system_prompt == "Be brief."
    # The stage choice that failed its own field check kept its stored value; the others
    # are stored as given, unvalidated: they count only if the agent becomes a pipeline.
    assert (agent.stt_provider, agent.stt_language) == ("", "not a language")
    assert agent.tts_voice == "nonsense-voice"


def test_a_pipeline_agent_ignores_the_realtime_voice_and_model(admin_client):
    agent = Agent.objects.create(
        name="Pipe",
        slug="pipe",
        provider="pipeline",
        stt_provider="local",
        tts_provider="local",
        reply_handler=REPLY_HANDLER_NAME,
    )

    response = post_change(admin_client, agent, voice="nonsense-voice", model="not a model")

    assert response.status_code == 302, form_errors(response)
    agent.refresh_from_db()
    assert agent.voice == "nonsense-voice"
    # Made a Realtime agent, the same values are refused.
    response = post_change(admin_client, agent, provider="openai_realtime")
    assert set(form_errors(response)) == {"model", "voice"}


def test_the_model_validates_only_the_chosen_architectures_fields():
    Agent(name="R", slug="r", stt_language="not a language", voice="alloy").full_clean()
    with pytest.raises(Exception, match="stt_language"):
        Agent(
            name="P",
            slug="p",
            provider="pipeline",
            stt_provider="local",
            tts_provider="local",
            reply_handler=REPLY_HANDLER_NAME,
            stt_language="not a language",
        ).full_clean()


def test_each_section_says_which_architectures_it_is_for(admin_client):
    page = admin_client.get(admin_url("agent", "add")).content.decode()

    sections = re.findall(r'<fieldset class="module aligned ([^"]*)"', page)
    assert "va-mode va-mode-openai_realtime va-mode-elevenlabs_convai" in sections
    assert "va-mode va-mode-elevenlabs_convai" in sections
    assert "va-mode va-mode-pipeline" in sections
    assert "For OpenAI Realtime, ElevenLabs Conversational AI." in page
    assert escape("For Pipeline (STT → reply → TTS).") in page
    assert "voiceagents/agent_form.js" in page


# -- the demo agents, saved again as their page shows them ------------------------------------


def test_the_demo_agents_save_again_unchanged_without_any_key(admin_client):
    call_command("voiceagents_demo", stdout=io.StringIO())
    for slug in ("demo", "offline-demo"):
        agent = Agent.objects.get(slug=slug)
        before = model_to_dict(agent)
        url = admin_url("agent", "change", agent.pk)
        page = admin_client.get(url)
        data = {**page_form(page), **management_form_data(page), "_continue": "Save"}

        response = admin_client.post(url, data)

        assert response.status_code == 302, (slug, form_errors(response))
        agent.refresh_from_db()
        assert model_to_dict(agent) == before
    assert Agent.objects.get(slug="demo").missing_keys()  # the page warns instead


def test_the_page_form_reader_posts_the_initial_values(admin_client):
    """The reader above sees what a browser posts: the new agent form's values."""
    page = admin_client.get(admin_url("agent", "add"))
    values = page_form(page)
    assert values["provider"] == "openai_realtime"
    assert values["voice"] == "" and values["voice_other"] == ""
    assert values["enabled"] == "on" and values["language"] == "en"
    assert values["variables"] == "{}"
    assert set(agent_form_data()) - {"_save"} <= set(values)
