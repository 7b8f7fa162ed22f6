"""The pipeline's stages at run time: speech-to-text, reply, text-to-speech.

``base`` defines what each kind of stage does for one call; each service is a module here
(``deepgram``, ``whisper``, ``openai_chat``, ``elevenlabs_tts``, ``openai_tts``), named by the
``runtime`` of its spec in ``voiceagents.providers.stages``. The pipeline provider
(``voiceagents.providers.pipeline``) composes one of each.
"""
