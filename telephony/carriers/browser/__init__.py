"""The browser test call: a staff member talks to an agent from the admin, no phone needed.

A carrier like Twilio and Telnyx, with the browser as the phone: ``views`` creates the ``Call``
and mints its stream token, the page (``telephony/browser_call.html`` and its script) streams the
microphone over ``media.BrowserMediaConsumer`` and plays the agent's voice. The frames are
``frames.BrowserCodec``'s; docs/carriers/browser.md describes them.
"""
