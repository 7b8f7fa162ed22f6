"""OpenAI Realtime provider against the loopback fake (GA protocol, docs/providers/openai_realtime.md)."""

import asyncio
import base64
from contextlib import asynccontextmanager

import pytest

from tests.fakes.openai_realtime import FakeOpenAIRealtime, ScriptedResponse
from tests.voiceagents.providers.contract import *  # noqa: F403  (the contract suite runs here)
from voiceagents.audio.formats import MULAW_8K, PCM16_16K, PCM16_24K
from voiceagents.exceptions import ProviderConnectionError
from voiceagents.providers.base import (
    AgentAudio,
    AgentTranscript,
    AgentTurnFinished,
    AgentTurnStarted,
    CallerSpeechStarted,
    CallerSpeechStopped,
    CallerTranscript,
    ProviderConfig,
    ProviderErrorEvent,
)
from voiceagents.providers.openai_realtime import OpenAIRealtimeProvider


def config(url, *, key=None, carrier_format=MULAW_8K, **options):
    return ProviderConfig(
        call_id="call-1",
        api_key=key or "sk-test-openai",
        base_url=url,
        model="gpt-realtime",
        voice="marin",
        instructions="Be brief.",
        language="en-GB",
        options=options,
        carrier_format=carrier_format,
        connect_timeout=5,
    )


@pytest.fixture
async def fake():
    async with FakeOpenAIRealtime() as server:
        yield server


@asynccontextmanager
async def opened_provider(provider_config: ProviderConfig):
    provider = OpenAIRealtimeProvider(provider_config)
    await provider.open()
    try:
        yield provider
    finally:
        await provider.close()


class OpenAIHarness:
    """The provider contract's view of OpenAI Realtime and its fake."""

    def __init__(self, fake: FakeOpenAIRealtime):
        self.fake = fake

    def make(self, *, valid_key: bool = True) -> OpenAIRealtimeProvider:
        return OpenAIRealtimeProvider(config(self.fake.url, key=None if valid_key else "sk-bad"))

    def script_reply(self, audio: bytes, *, chunks: int) -> None:
        chunk = -(-len(audio) // chunks)
        self.fake.responses.append(ScriptedResponse(audio, "", chunk=chunk, interval=0.02))

    def caller_audio(self) -> bytes:
        return bytes(self.fake.session.audio_in) if self.fake.sessions else b""

    def said(self) -> list[str]:
        return [e["response"]["instructions"] for e in self.fake.events_of("response.create")]

    def heard(self) -> list[int]:
        return [e["audio_end_ms"] for e in self.fake.events_of("conversation.item.truncate")]

    async def drop(self) -> None:
        await self.fake.wait_for(lambda: self.fake.session_ready.is_set())
        await self.fake.drop(1011, "internal error")


@pytest.fixture
def provider_harness(fake):
    return OpenAIHarness(fake)


async def collect(provider, count, timeout=5.0):
    events = []

    async def run():
        async for event in provider.events():
            events.append(event)
            if len(events) >= count:
                return

    await asyncio.wait_for(run(), timeout)
    return events


async def test_connects_with_bearer_key_and_configures_a_pcmu_session(fake):
    async with opened_provider(config(fake.url)) as provider:
        update = (await fake.wait_for(lambda: fake.events_of("session.update")))[0]["session"]
        assert fake.session.path == "/v1/realtime?model=gpt-realtime"
        assert "OpenAI-Beta" not in fake.session.headers
        assert update["type"] == "realtime"
        assert update["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        assert update["audio"]["output"] == {"format": {"type": "audio/pcmu"}, "voice": "marin"}
        assert update["audio"]["input"]["transcription"]["language"] == "en"
        assert update["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        assert "temperature" not in update
        assert provider.input_format == provider.output_format == MULAW_8K


@pytest.mark.parametrize(
    ("carrier", "options"), [(PCM16_16K, {}), (MULAW_8K, {"audio_format": "pcm"})]
)
async def test_uses_24k_pcm_when_the_carrier_leg_is_not_mulaw_or_when_forced(
    fake, carrier, options
):
    async with opened_provider(config(fake.url, carrier_format=carrier, **options)) as provider:
        update = (await fake.wait_for(lambda: fake.events_of("session.update")))[0]["session"]
        assert update["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert provider.output_format == PCM16_24K


async def test_options_select_semantic_vad_tools_and_pass_session_fields_through(fake):
    tools = [{"type": "function", "name": "book", "parameters": {"type": "object"}}]
    async with opened_provider(
        config(
            fake.url,
            turn_detection="semantic_vad",
            tools=tools,
            session={"tool_choice": "required"},
        )
    ):
        update = (await fake.wait_for(lambda: fake.events_of("session.update")))[0]["session"]
        assert update["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
        assert update["tools"] == tools
        assert update["tool_choice"] == "required"


async def test_wrong_key_is_a_connection_error_naming_the_status(fake):
    provider = OpenAIRealtimeProvider(config(fake.url, key="sk-wrong"))
    with pytest.raises(ProviderConnectionError) as excinfo:
        await provider.open()
    assert excinfo.value.status_code == 401
    assert "API key" in str(excinfo.value)


async def test_unreachable_provider_is_a_connection_error():
    provider = OpenAIRealtimeProvider(config("ws://127.0.0.1:1/v1/realtime"))
    with pytest.raises(ProviderConnectionError):
        await provider.open()


async def test_audio_both_ways_and_the_turn_events(fake):
    fake.responses.append(ScriptedResponse(audio=b"\x11" * 1200, transcript="Hi there.", chunk=400))
    async with opened_provider(config(fake.url)) as provider:
        payload = base64.b64encode(b"\x22" * 160).decode()
        await provider.send_audio(payload)
        await fake.wait_for(lambda: len(fake.session.audio_in) == 160)
        assert fake.events_of("input_audio_buffer.append")[0]["audio"] == payload

        await provider.say("Hello!")
        events = await collect(provider, 6)
        assert isinstance(events[0], AgentTurnStarted)
        audio = [e for e in events if isinstance(e, AgentAudio)]
        assert b"".join(base64.b64decode(a.payload_b64) for a in audio) == b"\x11" * 1200
        assert {a.turn_id for a in audio} == {events[0].turn_id}
        assert isinstance(events[4], AgentTranscript) and events[4].text == "Hi there."
        assert events[5] == AgentTurnFinished(events[0].turn_id, cancelled=False)
        assert "Hello!" in fake.events_of("response.create")[0]["response"]["instructions"]


async def test_caller_events_and_interrupt_truncates_without_cancelling_under_server_vad(fake):
    async with opened_provider(config(fake.url)) as provider:
        await fake.wait_for(lambda: fake.session_ready.is_set())
        item = await fake.speech_started(audio_start_ms=120)
        await fake.caller_transcript(item, "Hello?")
        started, transcript = await collect(provider, 2)
        assert started == CallerSpeechStarted(item, 120)
        assert transcript == CallerTranscript(item, "Hello?")
        fake.responses.append(ScriptedResponse(audio=b"\x11" * 800, transcript="Hi.", chunk=400))
        await provider.say("Hi.")
        turn, audio = await collect(provider, 2)
        assert isinstance(audio, AgentAudio) and audio.turn_id == turn.turn_id
        await provider.interrupt(840)
        truncate = (await fake.wait_for(lambda: fake.events_of("conversation.item.truncate")))[0]
        assert truncate == {
            "type": "conversation.item.truncate",
            "item_id": turn.turn_id,
            "content_index": 0,
            "audio_end_ms": 840,
        }
        await asyncio.sleep(0.05)
        assert fake.events_of("response.cancel") == []


async def test_interrupt_also_cancels_when_turn_detection_is_off(fake):
    assert not OpenAIRealtimeProvider(config(fake.url)).capabilities.needs_local_vad
    async with opened_provider(config(fake.url, turn_detection="none")) as provider:
        assert provider.capabilities.needs_local_vad
        await provider.interrupt(100)
        await fake.wait_for(lambda: fake.events_of("response.cancel"))
        # Nothing was playing: there is no item to truncate.
        assert fake.events_of("conversation.item.truncate") == []


async def test_error_frames_are_fatal_unless_our_request_was_invalid(fake):
    async with opened_provider(config(fake.url)) as provider:
        await fake.wait_for(lambda: fake.session_ready.is_set())
        await fake.error(
            "no active response",
            code="response_cancel_not_active",
            error_type="invalid_request_error",
        )
        await fake.error("boom", code="server_error")
        recoverable, fatal = await collect(provider, 2)
        assert isinstance(recoverable, ProviderErrorEvent) and not recoverable.fatal
        assert (
            isinstance(fatal, ProviderErrorEvent) and fatal.fatal and fatal.code == "server_error"
        )


async def test_abrupt_close_raises_a_connection_error_from_events(fake):
    provider = OpenAIRealtimeProvider(config(fake.url))
    await provider.open()
    await fake.wait_for(lambda: fake.session_ready.is_set())
    await fake.drop(1011, "internal error")
    with pytest.raises(ProviderConnectionError, match="1011"):
        await collect(provider, 1)


async def test_our_own_close_ends_events_quietly(fake):
    provider = OpenAIRealtimeProvider(config(fake.url))
    await provider.open()
    reader = asyncio.ensure_future(collect(provider, 1))
    await asyncio.sleep(0.05)
    await provider.close()
    # events() ends without an error when we closed the socket ourselves.
    assert await asyncio.wait_for(reader, 2) == []


async def test_audio_of_an_interrupted_response_arriving_late_is_dropped(fake):
    # Under server VAD the provider does not cancel: OpenAI may go on streaming the reply.
    script = ScriptedResponse(audio=b"\x11" * 1600, transcript="Hi.", chunk=400, interval=0.02)
    fake.responses.append(script)
    async with opened_provider(config(fake.url)) as provider:
        await provider.say("Hi.")
        started, _ = await collect(provider, 2)
        await provider.interrupt(60)
        rest = await collect(provider, 2)
        assert [type(e) for e in rest] == [AgentTranscript, AgentTurnFinished]
        assert rest[1].turn_id == started.turn_id
        late = {"type": "response.output_audio.delta", "delta": "AA=="}
        await fake.send({**late, "response_id": "resp_next", "item_id": "item_next"})
        assert await collect(provider, 1) == [AgentAudio("item_next", "AA==")]


async def test_a_failed_response_finishes_its_turn_with_the_error(fake):
    async with opened_provider(config(fake.url)) as provider:
        await fake.wait_for(lambda: fake.session_ready.is_set())
        added = {"id": "item_9", "type": "message", "role": "assistant"}
        await fake.send(
            {"type": "response.output_item.added", "response_id": "resp_9", "item": added}
        )
        failed = {"type": "failed", "error": {"type": "server_error", "message": "overloaded"}}
        await fake.send(
            {
                "type": "response.done",
                "response": {"id": "resp_9", "status": "failed", "status_details": failed},
            }
        )
        started, finished = await collect(provider, 2)
        assert started == AgentTurnStarted("item_9")
        assert finished == AgentTurnFinished("item_9", cancelled=False, error="overloaded")


async def test_without_turn_detection_caller_speech_stopping_here_commits_and_asks_a_reply(fake):
    async with opened_provider(config(fake.url, turn_detection="none")) as provider:
        await provider.local_speech(CallerSpeechStarted(audio_ms=100))
        await provider.local_speech(CallerSpeechStopped(audio_ms=900))
        await fake.wait_for(lambda: fake.events_of("response.create"))
        kinds = [e["type"] for e in fake.session.received]
        assert kinds[-2:] == ["input_audio_buffer.commit", "response.create"]
        assert kinds.count("input_audio_buffer.commit") == 1


async def test_built_in_tools_are_offered_and_results_answered(fake):
    from dataclasses import replace

    from voiceagents.tools import END_CALL

    cfg = replace(config(fake.url, tools=[{"type": "function", "name": "mine"}]), tools=(END_CALL,))
    async with opened_provider(cfg) as provider:
        update = (await fake.wait_for(lambda: fake.events_of("session.update")))[0]["session"]
        assert [tool["name"] for tool in update["tools"]] == ["end_call", "mine"]
        assert update["tools"][0]["parameters"] == END_CALL.parameters
        await provider.tool_result("call_7", "refused", is_error=True)
        (item,) = await fake.wait_for(lambda: fake.events_of("conversation.item.create"))
        assert item["item"] == {
            "type": "function_call_output",
            "call_id": "call_7",
            "output": '{"error": "refused"}',
        }
        await fake.wait_for(lambda: fake.events_of("response.create"))


async def test_resume_cancels_the_reply_to_the_noise_and_asks_the_model_to_go_on(fake):
    from voiceagents.providers.openai_realtime import RESUME_INSTRUCTIONS

    # The reply the server began for the noise: created, its first audio still to come.
    fake.responses.append(ScriptedResponse(audio=b"\x22" * 800, transcript="Sorry?", delay=2.0))
    async with opened_provider(config(fake.url)) as provider:
        await fake.wait_for(lambda: fake.session_ready.is_set())
        await fake.respond(fake.responses.pop(0))
        started = await collect(provider, 1)
        assert isinstance(started[0], AgentTurnStarted)
        assert await provider.resume() is True
        await fake.wait_for(lambda: fake.events_of("response.create"))
        assert len(fake.events_of("response.cancel")) == 1
        ask = fake.events_of("response.create")[0]["response"]["instructions"]
        assert ask == f"Be brief.\n\n{RESUME_INSTRUCTIONS}"
        # The cancelled reply finishes cancelled; its audio never comes out.
        events = await collect(provider, 4)
        assert [type(e) for e in events][:1] == [AgentTurnFinished]
        assert events[0].cancelled
        assert not any(isinstance(e, AgentAudio) and "Ig" in e.payload_b64 for e in events)


async def test_resume_with_nothing_in_progress_only_asks(fake):
    async with opened_provider(config(fake.url)) as provider:
        await fake.wait_for(lambda: fake.session_ready.is_set())
        assert await provider.resume() is True
        await fake.wait_for(lambda: fake.events_of("response.create"))
        assert fake.events_of("response.cancel") == []
