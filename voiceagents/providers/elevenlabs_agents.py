"""The ElevenLabs agent behind one of our agents: created from it, kept in sync, chosen per call.

An ElevenLabs Conversational AI conversation runs against an agent configured on ElevenLabs'
side, and some of that configuration cannot be sent per conversation: the audio formats in and
out are fixed on the agent. So we keep one ElevenLabs agent per audio format a carrier needs
(``ulaw_8000`` for µ-law phone audio, ``pcm_16000`` for 16 kHz linear PCM), each built from the
Django ``Agent`` (prompt, first message, language, voice, tools) and stored in
``Agent.remote_agents`` with a hash of what was sent. A call whose agent has not changed since the
last sync finds its ElevenLabs agent there without a request or a query.

An operator can instead name an ElevenLabs agent of their own in ``Agent.remote_agent_id``: it is
used as is and never modified (docs/providers/elevenlabs_convai.md#using-an-existing-elevenlabs-agent).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..audio.formats import MULAW_8K, PCM16_16K, AudioFormat
from ..conf import get_setting
from ..exceptions import ProviderAPIError, ProvisioningError
from ..tools import agent_tools
from . import providers
from .elevenlabs_api import VENDOR, ElevenLabsAPI
from .elevenlabs_voices import resolve_voice_id

logger = logging.getLogger(__name__)

PROVIDER_ID = "elevenlabs_convai"

#: Carrier audio format → the ElevenLabs format literal that passes it through unchanged.
FORMATS: dict[AudioFormat, str] = {MULAW_8K: "ulaw_8000", PCM16_16K: "pcm_16000"}
#: For any other carrier format: the platform's own default; the call converts to and from it.
FALLBACK_FORMAT = "pcm_16000"
#: What an agent is first synced for when no call has told us its carrier's format yet: µ-law,
#: the format of Twilio and of Telnyx's default codec.
DEFAULT_FORMAT = "ulaw_8000"

#: Overrides a call sends at conversation start; each must be enabled on the ElevenLabs agent,
#: or ElevenLabs closes the conversation straight away.
ENABLED_OVERRIDES = {
    "agent": {"prompt": {"prompt": True}, "first_message": True, "language": True},
    "tts": {"voice_id": True, "model_id": True},
}


#: The server events a call needs (``elevenlabs_convai`` reads each of them).
CLIENT_EVENTS = (
    "conversation_initiation_metadata",
    "ping",
    "audio",
    "interruption",
    "user_transcript",
    "agent_response",
    "agent_response_correction",
    "agent_response_complete",
    "client_tool_call",
)


def format_for(carrier_format: AudioFormat) -> str:
    """The ElevenLabs audio format for a carrier's audio format."""
    return FORMATS.get(carrier_format, FALLBACK_FORMAT)


def agent_body(agent, audio_format: str) -> dict[str, Any]:
    """The create/update body of the ElevenLabs agent for ``agent`` and ``audio_format``.

    Placeholders are ours (``{company}``), not ElevenLabs' (``{{company}}``), so the prompt and
    first message are sent filled with the agent's variables.
    """
    tts: dict[str, Any] = {
        "agent_output_audio_format": audio_format,
        "voice_id": resolve_voice_id(agent.effective_voice()),
    }
    model = agent.effective_model()
    if model:
        tts["model_id"] = model
    tools = [
        {
            "type": "client",
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
            "expects_response": True,
        }
        for tool in agent_tools(agent.transfer_allowlist or (), agent.tools or ())
    ]
    return {
        "name": f"{agent.name} ({audio_format}) · django-voiceagents",
        "conversation_config": {
            "asr": {"user_input_audio_format": audio_format},
            "tts": tts,
            "agent": {
                "first_message": agent.rendered_first_message(),
                "language": primary_language(agent.language),
                "prompt": {"prompt": agent.rendered_system_prompt(), "tools": tools},
            },
            # Setting the list replaces ElevenLabs' default one: name every event the call reads.
            "conversation": {"client_events": list(CLIENT_EVENTS)},
        },
        "platform_settings": {
            "overrides": {"conversation_config_override": ENABLED_OVERRIDES},
            # Private: conversations need a signed URL, which only our API key can get.
            "auth": {"enable_auth": True},
        },
    }


def primary_language(tag: str) -> str:
    """'en' for 'en-GB': ElevenLabs agents take a language code, not a full BCP-47 tag."""
    return (tag or "en").split("-")[0].lower()


def config_hash(body: dict[str, Any]) -> str:
    """A stable digest of ``body``: equal bodies, equal hashes, whatever the key order."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def api_for(agent) -> ElevenLabsAPI:
    """The REST client with the agent's ElevenLabs key and base URL (``agent`` may be None).

    Key: the agent's credential (chosen, else ElevenLabs' default), else ``ELEVENLABS_API_KEY``.
    URL: the credential's API base URL, else ``ELEVENLABS_CONVAI_URL``, else api.elevenlabs.io.
    """
    spec = providers.get(PROVIDER_ID)
    managed = agent is not None and agent.provider == PROVIDER_ID
    credential = agent.credential_for("provider") if managed else None
    if credential is None:
        from ..models import Credential

        credential = Credential.objects.default_for(spec.vendor)
    key = (
        credential.secret if credential else get_setting("API_KEY", vendor=spec.vendor, default="")
    )
    if not key:
        raise ProvisioningError(
            "No ElevenLabs API key: choose an ElevenLabs credential on the agent, mark one as "
            "the default, or set VOICEAGENTS['ELEVENLABS_API_KEY'].",
            vendor=VENDOR,
        )
    return ElevenLabsAPI(
        str(key),
        spec.resolve_url(credential.api_base_url if credential else ""),
        timeout=float(get_setting("HTTP_TIMEOUT", cast=float)),
    )


@dataclass
class _Plan:
    """What a sync will do, decided from the database before any request is made."""

    #: The formats asked for, in order.
    formats: list[str]
    #: Format → (ElevenLabs agent id or '' to create one, body, its hash): the ones to send.
    jobs: dict[str, tuple[str, dict, str]] = field(default_factory=dict)
    #: Format → agent id, for the formats already up to date.
    current: dict[str, str] = field(default_factory=dict)
    api: ElevenLabsAPI | None = None
    #: A problem found before any request (no key, a voice we cannot resolve).
    error: Exception | None = None


def sync_agent(agent, formats: Iterable[str] | None = None, *, force: bool = False) -> list[str]:
    """Create or update the agent's ElevenLabs agents; their ids, in the order of ``formats``.

    ``formats``: the formats already synced, else ``ulaw_8000``. An ElevenLabs agent is created
    when the format has none, updated when what we would send changed (always with ``force``),
    and left alone otherwise. One that was deleted on ElevenLabs' side is created again.

    Saves ``remote_agents``, ``remote_sync_error`` and ``remote_synced_at`` on the agent. On a
    vendor refusal the error is stored and ``ProvisioningError`` raised with ElevenLabs' message;
    agents created before the failure are kept.
    """
    plan = _plan(agent, formats, force=force)
    done, error = _send(plan)
    return _record(agent, plan, done, error)


async def provision_call(agent_pk, carrier_format: AudioFormat) -> dict[str, Any]:
    """The call-start hook (``ProviderSpec.provisioner``): ``provision`` for a call, with the
    requests to ElevenLabs made in a thread of their own and no transaction open meanwhile, so
    that a slow vendor holds up neither the process's database thread nor the agent's row."""
    from channels.db import database_sync_to_async

    from .. import dbthread
    from ..models import Agent

    def plan():
        agent = Agent.objects.select_related("credential").get(pk=agent_pk)
        known = _known_agent(agent, carrier_format)
        return agent, known, (None if known else _plan(agent, [format_for(carrier_format)]))

    agent, known, todo = await dbthread.run(plan)
    if known:
        return {"agent_id": known}
    done, error = await database_sync_to_async(_send, thread_sensitive=False)(todo)
    (agent_id,) = await dbthread.run(_record, agent, todo, done, error)
    return {"agent_id": agent_id}


def _plan(agent, formats: Iterable[str] | None, *, force: bool = False) -> _Plan:
    remote = dict(agent.remote_agents or {})
    plan = _Plan(list(formats) if formats is not None else list(remote) or [DEFAULT_FORMAT])
    try:
        plan.api = api_for(agent)
        for audio_format in plan.formats:
            body = agent_body(agent, audio_format)
            digest = config_hash(body)
            entry = remote.get(audio_format) or {}
            agent_id = entry.get("agent_id") or ""
            if agent_id and entry.get("config_hash") == digest and not force:
                plan.current[audio_format] = agent_id
            else:
                plan.jobs[audio_format] = (agent_id, body, digest)
    except (ProvisioningError, ValueError) as err:  # ValueError: a voice we cannot resolve
        plan.error = err
    return plan


def _send(plan: _Plan) -> tuple[dict[str, dict], Exception | None]:
    """Make the plan's requests (no database here); the entries made, and the first error."""
    done: dict[str, dict] = {}
    if plan.error is not None:
        return done, plan.error
    for audio_format, (agent_id, body, digest) in plan.jobs.items():
        try:
            done[audio_format] = _sync_one(plan.api, agent_id, body, digest)
        except ProviderAPIError as err:
            return done, err
    return done, None


def _record(agent, plan: _Plan, done: dict[str, dict], error: Exception | None) -> list[str]:
    """Store what the sync did on the agent's row (one short transaction); raise on failure."""
    from ..models import Agent

    with transaction.atomic():
        # Merged into the row as it is now: a sync of another format may have finished meanwhile.
        locked = Agent.objects.select_for_update().only("remote_agents").get(pk=agent.pk)
        remote = {**(locked.remote_agents or {}), **done}
        agent.remote_agents = remote
        agent.remote_sync_error = _message(error) if error else ""
        fields = ["remote_agents", "remote_sync_error"]
        if error is None:
            agent.remote_synced_at = timezone.now()
            fields.append("remote_synced_at")
        agent.save(update_fields=fields)
    if error is not None:
        logger.warning("ElevenLabs sync of agent %r failed: %s", agent.slug, _message(error))
        raise ProvisioningError(
            _message(error),
            vendor=VENDOR,
            status_code=getattr(error, "status_code", None),
            response=getattr(error, "response", None),
        ) from error
    return [remote[f]["agent_id"] for f in plan.formats]


def _sync_one(api: ElevenLabsAPI, agent_id: str, body: dict, digest: str) -> dict:
    if agent_id:
        try:
            api.update_agent(agent_id, body)
        except ProviderAPIError as err:
            if err.status_code != 404:
                raise
            logger.warning("ElevenLabs agent %s is gone; creating it again", agent_id)
            agent_id = ""
    if not agent_id:
        agent_id = api.create_agent(body)
    return {"agent_id": agent_id, "config_hash": digest, "synced_at": timezone.now().isoformat()}


def _message(error: Exception) -> str:
    """The error's own sentence (ElevenLabs' message in it), without the status/response tail."""
    return str(error.args[0]) if error.args else str(error)


def provision(agent, carrier_format: AudioFormat) -> dict[str, Any]:
    """``{"agent_id": ...}`` of the ElevenLabs agent a call of ``agent`` on a carrier of
    ``carrier_format`` talks to.

    An operator-supplied ``remote_agent_id`` is returned as is; an up-to-date ElevenLabs agent
    for the carrier's format is returned without a request or a query; otherwise that format is
    synced first (``ProvisioningError`` when ElevenLabs refuses).
    """
    known = _known_agent(agent, carrier_format)
    if known:
        return {"agent_id": known}
    (agent_id,) = sync_agent(agent, [format_for(carrier_format)])
    return {"agent_id": agent_id}


def _known_agent(agent, carrier_format: AudioFormat) -> str:
    """The ElevenLabs agent to use with no request: the operator's, or an up-to-date one."""
    if agent.remote_agent_id:
        return agent.remote_agent_id
    audio_format = format_for(carrier_format)
    entry = (agent.remote_agents or {}).get(audio_format) or {}
    if entry.get("agent_id") and entry.get("config_hash") == _current_hash(agent, audio_format):
        return entry["agent_id"]
    return ""


def _current_hash(agent, audio_format: str) -> str | None:
    try:
        return config_hash(agent_body(agent, audio_format))
    except ValueError:
        return None  # an unusable voice: sync_agent reports it


def fetch_conversation(call) -> dict[str, Any]:
    """The ``report_fetcher`` hook: ElevenLabs' record of the call's conversation (transcript,
    analysis), read with the call's agent's key. Fetched right after the call, its analysis may
    still be in progress (``"status": "processing"``)."""
    return api_for(call.agent).get_conversation(call.provider_session_id)
