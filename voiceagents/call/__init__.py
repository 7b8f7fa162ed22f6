"""The call world: one live call, from its stream's start to its final row.

- ``streamtokens``: the single-use token that authenticates a carrier's media stream;
- ``callsetup``: the two database edges of a call (the snapshot at stream start, the final write);
- ``session.CallSession``: the per-call orchestrator between a carrier and a voice provider;
- ``transcripts``: turns and timeline events, written by a background task in batches;
- ``control``: commands to live calls (hang up, say, transfer) through the channel layer.

The collaborators ``CallSession`` owns, one job each:

- ``caller_audio.CallerAudio``: caller audio on its way to the provider (held while the provider
  opens, converted once when the formats differ, else the carrier's base64 passes through);
- ``playback.Playback``: agent audio out to the carrier, paced, with marks, and the position the
  caller has heard;
- ``turns.TurnTracker``: the conversation's turns by the provider's neutral turn ids (which agent
  turn receives audio, which are playing, which were interrupted, when they are settled);
- ``local_vad.LocalSpeechDetector``: caller speech start/stop found on our side, for providers
  that declare ``needs_local_vad``;
- ``false_barge.FalseBargeWatch``: whether the last barge-in was the caller or a noise (then
  the provider is asked to ``resume``);
- ``audio.echo.EchoDetector`` (in the audio core): caller frames that only echo the agent's own
  audio (a speakerphone), passed on as silence;
- ``metrics.CallMetrics``: the call's counters, written to ``Call.metrics`` at its end.

None of them knows a vendor; none touches the database, settings or the channel layer.
"""
