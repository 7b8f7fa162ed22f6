"""The seed-compatible Python API: ``from patter import Patter``.

This is the scripting face of the same system the Django apps run: ``Patter(...)`` holds the
carrier and provider keys, ``Patter.deepgram()`` and friends build pipeline stages with the seed's
defaults, and ``phone.agent(...)`` builds an agent configuration with the seed's fallbacks. Serving
calls from a script (``phone.serve``) arrives with the call path.
"""

from .api import STT, TTS, AgentConfig, Patter

__all__ = ["Patter", "AgentConfig", "STT", "TTS"]
