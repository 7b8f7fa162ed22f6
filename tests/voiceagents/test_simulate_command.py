"""``voiceagents_call_simulate`` without a server: finding the agent and its number, the audio
files, the TwiML answer, and the errors a user sees. The whole call is tests/servers/test_simulate.py.
"""

from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from tests.integration.conftest import free_port
from tests.voiceagents.audio.signals import tone
from voiceagents import simulator
from voiceagents.management.commands.voiceagents_call_simulate import (
    SIMULATOR_LABEL,
    find_agent,
    twilio_number_for,
)
from voiceagents.models import Agent, Credential, PhoneNumber


@pytest.fixture
def agent(db):
    return Agent.objects.create(name="Front desk", slug="front-desk")


def test_an_agent_is_found_by_slug_or_name(agent):
    assert find_agent("front-desk") == agent
    assert find_agent("FRONT DESK") == agent
    with pytest.raises(CommandError, match=r"No agent named 'Back desk'\. Agents: 'Front desk'"):
        find_agent("Back desk")


def test_an_agent_without_a_number_gets_a_simulator_number(agent):
    number, created = twilio_number_for(agent)
    assert created
    assert number.number == "+15550100001" and number.agent == agent
    credential = number.credential
    assert (credential.vendor, credential.label) == ("twilio", SIMULATOR_LABEL)
    assert len(credential.secret) == 32
    number.full_clean()
    credential.full_clean()

    assert twilio_number_for(agent) == (number, False)
    other = Agent.objects.create(name="Other", slug="other")
    second, created = twilio_number_for(other)
    assert created and second.number == "+15550100002" and second.credential == credential
    assert Credential.objects.filter(vendor="twilio").count() == 1


def test_an_agent_with_a_twilio_number_keeps_it(agent):
    credential = Credential(vendor="twilio", label="real", data={"account_sid": "AC" + "1" * 32})
    credential.secret = "real-token"
    credential.save()
    real = PhoneNumber.objects.create(
        number="+14155550100", carrier="twilio", credential=credential, agent=agent
    )
    assert twilio_number_for(agent) == (real, False)


def test_the_command_says_when_no_server_answers(agent):
    out = StringIO()
    server = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(CommandError, match="No server answers at .*make demo"):
        call_command("voiceagents_call_simulate", agent="Front desk", server=server, stdout=out)
    assert "Front desk had no Twilio number: created the simulator number +15550100001" in (
        out.getvalue()
    )


def test_a_wav_file_is_read_at_any_rate_as_phone_audio(tmp_path):
    path = tmp_path / "in.wav"
    samples = np.column_stack((tone(440, 22050, 0.5), tone(440, 22050, 0.5))).ravel()
    with simulator.wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(22050)
        wav.writeframes(samples.astype("<i2").tobytes())
    mulaw = simulator.read_wav(path)
    # Half a second at 8 kHz, one byte a sample, and the resampling filter's few ms of tail.
    assert 4000 <= len(mulaw) <= 4040

    out = tmp_path / "out.wav"
    simulator.write_wav(out, mulaw)
    with simulator.wave.open(str(out), "rb") as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
        back = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert back.size == len(mulaw)
    assert 14000 < np.abs(back[400:-400]).max() < 18000


def test_a_file_that_is_not_a_pcm_wav_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not audio")
    with pytest.raises(simulator.SimulationError, match="Cannot read .*notes.txt as a WAV"):
        simulator.read_wav(path)


def test_twiml_connecting_a_stream_is_read():
    document = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        '<Stream url="wss://voice.example.test/telephony/twilio/media/">'
        '<Parameter name="call_id" value="abc" /><Parameter name="stream_token" value="t&amp;k" />'
        "</Stream></Connect><Hangup /></Response>"
    )
    answer = simulator.parse_twiml(document)
    assert answer.url == "wss://voice.example.test/telephony/twilio/media/"
    assert answer.parameters == {"call_id": "abc", "stream_token": "t&k"}
    assert (
        simulator.local_stream_url(answer.url, "http://127.0.0.1:8000")
        == "ws://127.0.0.1:8000/telephony/twilio/media/"
    )


def test_an_apology_is_an_error_that_quotes_it():
    document = "<Response><Say>Sorry, no one can take your call.</Say><Hangup/></Response>"
    with pytest.raises(simulator.SimulationError, match="it said: 'Sorry, no one can take"):
        simulator.parse_twiml(document)
