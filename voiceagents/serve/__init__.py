"""The production launcher: W uvicorn worker processes behind one port, drained on SIGTERM.

``python -m voiceagents.serve [APP] --host H --port P --workers W`` (or ``python manage.py
voiceagents_serve ...``). ``supervisor`` starts and restarts the workers, ``worker`` runs one,
``sockets`` binds their listening sockets; deploy/README.md says why and how to run it.
"""
