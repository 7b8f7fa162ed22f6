"""Adding a vendor is its module, its fake, its tests and one registry line: the proof.

This package defines a carrier ("Dummy Tel": its own frame vocabulary, 16 kHz linear PCM, its own
handshake key) and uses a voice provider ("Dummy Voice", ``tests/voiceagents/providers/dummy.py``:
its own protocol over a WebSocket, its own turn ids, no truncation) that exist nowhere under
``voiceagents/`` or ``telephony/``. They are registered from here (``conftest.py``), and calls run
through the same webhook-free path a carrier's calls take: a ``Call`` row recorded by the shared
services, a stream authenticated by its single-use token, the shared media consumer and
``CallSession``, the provider's loopback fake. The media-consumer contract runs against them too.
"""
