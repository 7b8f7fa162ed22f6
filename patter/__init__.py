"""The seed-compatible Python API: ``from patter import Patter``.

This is the scripting face of the same system the Django apps run: ``Patter(...)`` holds the
carrier and provider keys, ``Patter.deepgram()`` and friends build pipeline stages with the seed's
defaults, ``phone.agent(...)`` builds an agent configuration with the seed's fallbacks, and
``await phone.serve(agent, on_message=...)`` stores it all in the project's database and answers
calls under uvicorn (``patter.server``). Outbound calls (``phone.call``) are not built yet.
"""

from .api import STT, TTS, AgentConfig, Patter

__all__ = ["Patter", "AgentConfig", "STT", "TTS"]
