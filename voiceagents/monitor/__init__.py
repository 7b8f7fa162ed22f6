"""The admin's live monitor: calls in progress, their transcript as it is spoken, a hang-up button.

- ``views``: the page (the live calls and their transcript so far, from the database), its
  JSON state, and the hang-up (the control plane's ``hangup``, as the Calls list's action);
- ``state``: what the page starts from, in two queries;
- ``consumer.LiveMonitorConsumer``: the staff-only WebSocket that forwards the calls' events
  (``voiceagents.call.monitor``, through the channel layer) to the page, rate-limited by
  ``outbox.Outbox``, at most a few sockets per user (``slots``).

docs/admin/monitor.md describes it for operators.
"""
