"""ElevenLabs Conversational AI provider against the loopback fakes (REST API + conversation socket)."""

import asyncio
import base64
import json

import pytest

from tests.fakes.elevenlabs_api import API_KEY, FakeElevenLabsAPI
from tests.fakes.elevenlabs_convai import FakeElevenLabsConvAI, ScriptedReply
from tests.voiceagents.providers.contract import *  # noqa: F403  (the contract suite runs here)
from tests.voiceagents.providers.contract import take
from voiceagents.audio.formats import MULAW_8K, PCM16_16K
from voiceagents.exceptions import ProviderConnectionError
from voiceagents.providers.base import (
    AgentAudio,
    AgentTranscript,
    AgentTurnFinished,
    AgentTurnStarted,
    CallerSpeechStarted,
    CallerTranscript,
    ConversationEnded,
    ProviderConfig,
    ToolCall,
)
from voiceagents.providers.elevenlabs_convai import ElevenLabsConvAIProvider
from voiceagents.tools import END_CALL

ULAW_AGENT = {
    "conversation_config": {
        "asr": {"user_input_audio_format": "ulaw_8000"},
        "tts": {"agent_output_audio_format": "ulaw_8000"},
    }
}


@pytest.fixture
def api():
    with FakeElevenLabsAPI() as server:
        yield server


@pytest.fixture
async def fake(api):
    async with FakeElevenLabsConvAI(api) as server:
        yield server


def config(api, agent_id, *, key=API_KEY, carrier_format=MULAW_8K, first="", **options):
    return ProviderConfig(
        call_id="call-1",
        api_key=key,
        base_url=api.url,
        model="eleven_flash_v2_5",
        voice="rachel",
        instructions="Be brief.",
        language="en-GB",
        options={"agent_id": agent_id, **options},
        carrier_format=carrier_format,
        connect_timeout=5,
        first_message=first,
        tools=(END_CALL,),
        variables={"company": "Acme", "caller_number": "+15551230000"},
    )


class ElevenLabsHarness:
    """The provider contract's view of ElevenLabs ConvAI and its fakes."""

    def __init__(self, api: FakeElevenLabsAPI, fake: FakeElevenLabsConvAI):
        self.api, self.fake = api, fake
        self.agent_id = api.add_agent(ULAW_AGENT)

    def make(self, *, valid_key: bool = True) -> ElevenLabsConvAIProvider:
        key = API_KEY if valid_key else "sk_bad"
        return ElevenLabsConvAIProvider(config(self.api, self.agent_id, key=key))

    def script_reply(self, audio: bytes, *, chunks: int) -> None:
        chunk = -(-len(audio) // chunks)
        self.fake.replies.append(ScriptedReply(audio, "", chunk=chunk, interval=0.02))

    def caller_audio(self) -> bytes:
        return self.fake.caller_audio()

    def said(self) -> list[str]:
        return [m["text"] for m in self.fake.of_type("user_message")]

    def heard(self) -> None:
        return None  # ElevenLabs is told nothing: its server cut the turn itself

    async def drop(self) -> None:
        await self.fake.wait_for(lambda: self.fake.conversations)
        await self.fake.drop()


@pytest.fixture
def provider_harness(api, fake):
    return ElevenLabsHarness(api, fake)


@pytest.fixture
async def ulaw_agent(api):
    return api.add_agent(ULAW_AGENT)


async def open_provider(cfg):
    provider = ElevenLabsConvAIProvider(cfg)
    await provider.open()
    return provider


async def test_open_signs_server_side_and_sends_the_overrides_and_variables(api, fake, ulaw_agent):
    provider = await open_provider(
        config(api, ulaw_agent, first="Hi, Acme here.", dynamic_variables={"tier": "gold"})
    )
    try:
        (signing,) = api.of("GET", "/v1/convai/conversation/get-signed-url")
        assert signing.headers["xi-api-key"] == API_KEY
        assert "conversation_signature=" in fake.conversation.path
        init = fake.conversation.received[0]
        assert init["type"] == "conversation_initiation_client_data"
        assert init["conversation_config_override"] == {
            "agent": {
                "prompt": {"prompt": "Be brief."},
                "first_message": "Hi, Acme here.",
                "language": "en",
            },
            "tts": {"voice_id": "21m00Tcm4TlvDq8ikWAM", "model_id": "eleven_flash_v2_5"},
        }
        assert init["dynamic_variables"] == {
            "company": "Acme",
            "caller_number": "+15551230000",
            "tier": "gold",
        }
        assert provider.session_id == fake.conversation.conversation_id
        assert provider.input_format == provider.output_format == MULAW_8K
        # The key never travels on the socket.
        assert API_KEY not in json.dumps(fake.conversation.received)
    finally:
        await provider.close()


async def test_a_disabled_override_ends_the_set_up_with_a_readable_reason(api, fake, ulaw_agent):
    fake.allowed_overrides = frozenset({"agent.language"})
    with pytest.raises(ProviderConnectionError) as caught:
        await open_provider(config(api, ulaw_agent, first="Hello"))
    message = str(caught.value)
    assert "1008" in message and "is not allowed by config" in message
    assert "overrides" in message


async def test_formats_other_than_asked_are_declared_for_conversion(api, fake, caplog):
    agent = api.add_agent({})  # no formats: ElevenLabs' default, pcm_16000 both ways
    provider = await open_provider(config(api, agent))
    try:
        assert provider.input_format == provider.output_format == PCM16_16K
        assert "converted" in caplog.text
    finally:
        await provider.close()


async def test_l16_carrier_expects_pcm_16000_without_a_warning(api, fake, caplog):
    agent = api.add_agent(
        {
            "conversation_config": {
                "asr": {"user_input_audio_format": "pcm_16000"},
                "tts": {"agent_output_audio_format": "pcm_16000"},
            }
        }
    )
    provider = await open_provider(config(api, agent, carrier_format=PCM16_16K))
    try:
        assert provider.output_format == PCM16_16K
        assert "converted" not in caplog.text
    finally:
        await provider.close()


async def test_pings_are_answered_with_their_event_id_while_audio_streams(api, fake, ulaw_agent):
    fake.replies.append(ScriptedReply(b"\x7f" * 16000, "A long answer.", chunk=160, interval=0.002))
    provider = await open_provider(config(api, ulaw_agent, first="Hi"))
    seen = []

    async def drain():
        async for event in provider.events():
            seen.append(event)

    reader = asyncio.ensure_future(drain())
    try:
        await fake.wait_for(lambda: any(isinstance(e, AgentAudio) for e in seen))
        for event_id in (3, 4):
            await fake.ping(event_id, ping_ms=45 if event_id == 4 else None)
        await fake.wait_for(lambda: len(fake.of_type("pong")) == 2)
        assert [m["event_id"] for m in fake.of_type("pong")] == [3, 4]
        # Answered while the utterance was still streaming, not after it.
        assert not any(isinstance(e, AgentTurnFinished) for e in seen)
    finally:
        await provider.close()
        await asyncio.wait_for(reader, 5)


async def test_interruption_starts_caller_speech_and_drops_the_cut_utterance(api, fake, ulaw_agent):
    fake.replies += [
        ScriptedReply(b"\x11" * 8000, "First answer, rather long.", chunk=400, interval=0.01),
        ScriptedReply(b"\x22" * 800, "Second.", chunk=400),
    ]
    provider = await open_provider(config(api, ulaw_agent, first="Hi"))
    try:
        events = provider.events()
        first = await take(events, AgentAudio)
        assert isinstance(first[0], AgentTurnStarted)
        await fake.user_speaks("Stop, please.")
        # A late chunk of the cut utterance, as the server may still have had in flight.
        await fake.send(
            {"type": "audio", "audio_event": {"audio_base_64": "EREREQ==", "event_id": 1}}
        )
        seen = await take(events, AgentTurnFinished)
        while not any(isinstance(e, AgentAudio) and e.turn_id != "a1" for e in seen):
            seen += await take(events, AgentAudio)
        kinds = [type(e) for e in seen]
        assert kinds.index(CallerSpeechStarted) < kinds.index(CallerTranscript)
        cut = next(e for e in seen if isinstance(e, AgentTurnFinished))
        assert cut.turn_id == "a1" and cut.cancelled
        speech = next(e for e in seen if isinstance(e, CallerSpeechStarted))
        transcript = next(e for e in seen if isinstance(e, CallerTranscript))
        assert transcript.turn_id == speech.turn_id and transcript.text == "Stop, please."
        after_cut = seen[kinds.index(CallerSpeechStarted) :]
        assert not [e for e in after_cut if isinstance(e, AgentAudio) and e.turn_id == "a1"]
        second = [e for e in seen if isinstance(e, AgentAudio) and e.turn_id != "a1"]
        assert base64.b64decode(second[0].payload_b64) == b"\x22" * 400
    finally:
        await provider.close()


async def test_a_correction_rewrites_the_interrupted_turn(api, fake, ulaw_agent):
    fake.replies.append(
        ScriptedReply(b"\x11" * 8000, "Sure, what day works? We have", interval=0.01)
    )
    provider = await open_provider(config(api, ulaw_agent, first="Hi"))
    try:
        events = provider.events()
        await take(events, AgentAudio)
        await fake.user_speaks("Tomorrow", reply=False)
        await fake.correct("Sure, what day works? We have", "Sure, what day")
        seen = await take(events, CallerTranscript)
        while not any(isinstance(e, AgentTranscript) and e.corrected for e in seen):
            seen += await take(events, AgentTranscript)
        correction = [e for e in seen if isinstance(e, AgentTranscript) and e.corrected][-1]
        assert (correction.turn_id, correction.text) == ("a1", "Sure, what day")
    finally:
        await provider.close()


async def test_client_tool_calls_become_tool_calls_and_results_go_back(api, fake, ulaw_agent):
    provider = await open_provider(config(api, ulaw_agent))
    try:
        events = provider.events()
        await fake.tool_call("end_call", {"reason": "done"}, "toolu_9")
        (call,) = await take(events, ToolCall)
        assert (call.call_id, call.name, json.loads(call.arguments)) == (
            "toolu_9",
            "end_call",
            {"reason": "done"},
        )
        await provider.tool_result("toolu_9", "no such thing", is_error=True)
        (result,) = await fake.wait_for(fake.tool_results)
        assert result == {
            "type": "client_tool_result",
            "tool_call_id": "toolu_9",
            "result": "no such thing",
            "is_error": True,
        }
    finally:
        await provider.close()


@pytest.mark.parametrize(
    ("mode", "kind"), [(None, "contextual_update"), ("user_message", "user_message")]
)
async def test_dtmf_goes_in_as_context_or_as_a_user_message(api, fake, ulaw_agent, mode, kind):
    options = {"dtmf": mode} if mode else {}
    provider = await open_provider(config(api, ulaw_agent, **options))
    try:
        await provider.send_dtmf("7")
        (message,) = await fake.wait_for(lambda: fake.of_type(kind))
        assert "7" in message["text"]
    finally:
        await provider.close()


async def test_a_normal_close_by_the_server_ends_the_conversation(api, fake, ulaw_agent):
    provider = await open_provider(config(api, ulaw_agent))
    try:
        events = provider.events()
        await fake.close(1000, "Agent ended the call")
        (ended,) = await take(events, ConversationEnded)
        assert ended.reason == "Agent ended the call"
    finally:
        await provider.close()


async def test_no_agent_id_and_unknown_agents_are_refused(api, fake):
    with pytest.raises(ProviderConnectionError, match="no ElevenLabs agent"):
        await open_provider(config(api, ""))
    with pytest.raises(ProviderConnectionError, match="agent_not_found|not found"):
        await open_provider(config(api, "agent_missing"))
