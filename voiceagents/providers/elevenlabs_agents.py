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
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..audio.formats import MULAW_8K, PCM16_16K, AudioFormat
from ..conf import get_setting
from ..exceptions import ProviderAPIError, ProvisioningError
from ..tools import builtin_tools
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
        for tool in builtin_tools(agent.transfer_allowlist or ())
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


def sync_agent(agent, formats: Iterable[str] | None = None, *, force: bool = False) -> list[str]:
    """Create or update the agent's ElevenLabs agents; their ids, in the order of ``formats``.

    ``formats``: the formats already synced, else ``ulaw_8000``. An ElevenLabs agent is created
    when the format has none, updated when what we would send changed (always with ``force``),
    and left alone otherwise. One that was deleted on ElevenLabs' side is created again.

    Saves ``remote_agents``, ``remote_sync_error`` and ``remote_synced_at`` on the agent. On a
    vendor refusal the error is stored and ``ProvisioningError`` raised with ElevenLabs' message;
    agents created before the failure are kept.
    """
    from ..models import Agent

    error: ProviderAPIError | ValueError | None = None
    ids: list[str] = []
    # The row lock makes two calls that start together after an edit wait for one another rather
    # than both creating an ElevenLabs agent (the second then finds the first one's).
    with transaction.atomic():
        locked = Agent.objects.select_for_update().only("remote_agents").get(pk=agent.pk)
        remote = dict(locked.remote_agents or {})
        wanted = list(formats) if formats is not None else list(remote) or [DEFAULT_FORMAT]
        try:
            api = api_for(agent)
            for audio_format in wanted:
                ids.append(_sync_one(api, agent, audio_format, remote, force=force))
        except (ProviderAPIError, ValueError) as err:  # ValueError: a voice we cannot resolve
            error = err
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
    return ids


def _sync_one(api: ElevenLabsAPI, agent, audio_format: str, remote: dict, *, force: bool) -> str:
    body = agent_body(agent, audio_format)
    digest = config_hash(body)
    entry = remote.get(audio_format) or {}
    agent_id = entry.get("agent_id") or ""
    if agent_id and entry.get("config_hash") == digest and not force:
        return agent_id
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
    remote[audio_format] = {
        "agent_id": agent_id,
        "config_hash": digest,
        "synced_at": timezone.now().isoformat(),
    }
    return agent_id


def _message(error: Exception) -> str:
    """The error's own sentence (ElevenLabs' message in it), without the status/response tail."""
    return str(error.args[0]) if error.args else str(error)


def provision(agent, carrier_format: AudioFormat) -> dict[str, Any]:
    """The call-start hook (``ProviderSpec.provisioner``): ``{"agent_id": ...}`` for this call.

    An operator-supplied ``remote_agent_id`` is returned as is; an up-to-date ElevenLabs agent
    for the carrier's format is returned without a request or a query; otherwise that format is
    synced first (``ProvisioningError`` when ElevenLabs refuses).
    """
    if agent.remote_agent_id:
        return {"agent_id": agent.remote_agent_id}
    audio_format = format_for(carrier_format)
    entry = (agent.remote_agents or {}).get(audio_format) or {}
    if entry.get("agent_id") and entry.get("config_hash") == _current_hash(agent, audio_format):
        return {"agent_id": entry["agent_id"]}
    (agent_id,) = sync_agent(agent, [audio_format])
    return {"agent_id": agent_id}


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
