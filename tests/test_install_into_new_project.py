"""The README's "Installing into an existing project" snippets work in a brand-new Django project.

A fresh ``django-admin startproject mysite`` gets exactly the marked README blocks
(``install:settings``, ``install:urls``, ``install:asgi``, then ``install:safety`` and
``install:beat``) and nothing else; in subprocesses whose working directory is the new project
(so nothing is imported from this repository's root, only from the installed distribution):
before ``install:safety``, ``check`` fails on the PUBLIC_URL host (``telephony.E004``) and warns
that recordings would land in the project (``voiceagents.W003``); after it ``migrate`` and
``check`` succeed, serving MEDIA_URL the way Django's docs show for development makes ``check``
warn (``voiceagents.W004``), the admin pages of our models and ``/healthz/`` answer 200,
``mysite.asgi.application`` imports and the beat schedule names registered tasks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
MARKERS = ("install:settings", "install:urls", "install:asgi", "install:safety", "install:beat")
#: Per command; a busy machine runs `migrate` in a new project for over a minute.
TIMEOUT = 300

_BLOCK = r"<!--\s*{marker}\s*-->\s*\n```python[ \t]*\n(?P<code>.*?)\n```"


def readme_snippet(marker: str, text: str | None = None) -> str:
    """The fenced ```python block right after ``<!-- marker -->`` in the README."""
    text = README.read_text(encoding="utf-8") if text is None else text
    match = re.search(_BLOCK.format(marker=re.escape(marker)), text, re.DOTALL)
    if match is None:
        pytest.fail(
            f"README.md has no `<!-- {marker} -->` marker directly followed by a ```python block; "
            "the install instructions this test checks are gone or were reshaped"
        )
    return match.group("code") + "\n"


def test_readme_snippet_parser_fails_loudly_on_a_missing_marker():
    with pytest.raises(pytest.fail.Exception, match="install:nothing"):
        readme_snippet("install:nothing", "<!-- install:settings -->\n```python\nX = 1\n```\n")
    assert readme_snippet("install:x", "<!-- install:x -->\n```python\nX = 1\n```\n") == "X = 1\n"


def _clean_env() -> dict[str, str]:
    """The parent's environment without anything that would steer the new project's settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "PYTHONPATH", "PYTHONSTARTUP"}
        and not key.startswith(("DJANGO_", "VOICEAGENTS_", "CELERY_"))
        and not key.endswith("_API_KEY")
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(
    args: list[str], cwd: Path, env: dict[str, str], *, returncode: int = 0
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != returncode:
        pytest.fail(
            f"`{' '.join(args)}` in {cwd} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


# Runs inside the new project with `manage.py shell -c`: settings are mysite's.
SMOKE_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    from pathlib import Path

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment

    import telephony, voiceagents

    repo_root = Path(REPO_ROOT).resolve()
    cwd = Path.cwd().resolve()
    assert settings.SETTINGS_MODULE == "mysite.settings", settings.SETTINGS_MODULE
    assert settings.ROOT_URLCONF == "mysite.urls", settings.ROOT_URLCONF
    assert settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"), settings.DATABASES
    assert Path(settings.DATABASES["default"]["NAME"]).resolve().is_relative_to(cwd)
    # Our apps come from the installed distribution, not from the repository as a cwd/sys.path
    # entry: the example project and the test package (never installed) must not be importable.
    assert str(repo_root) not in [str(Path(p or ".").resolve()) for p in sys.path], sys.path
    assert importlib.util.find_spec("patter_site") is None, "repo root leaked onto sys.path"
    for module in (voiceagents, telephony):
        assert not Path(module.__file__).resolve().is_relative_to(cwd), module.__file__

    from asgiref.sync import async_to_sync
    from channels.routing import ProtocolTypeRouter, URLRouter
    from channels.testing import HttpCommunicator
    from mysite.asgi import application
    from telephony.routing import websocket_urlpatterns

    from celery import current_app
    import voiceagents.tasks

    beat_tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert beat_tasks == {
        "voiceagents.recover_lost_calls",
        "voiceagents.reconcile_stale_calls",
        "voiceagents.prune_processed_webhook_events",
        "voiceagents.purge_expired_call_content",
    }, beat_tasks
    assert beat_tasks <= set(current_app.tasks), sorted(current_app.tasks)

    setup_test_environment()  # lets django.test.Client's "testserver" host through ALLOWED_HOSTS
    assert isinstance(application, ProtocolTypeRouter), application
    assert set(application.application_mapping) == {"http", "websocket"}
    websocket = application.application_mapping["websocket"]
    assert isinstance(websocket, URLRouter), websocket
    assert websocket.routes == list(websocket_urlpatterns), websocket.routes
    asgi_health = async_to_sync(
        HttpCommunicator(application, "GET", "/healthz/", headers=[(b"host", b"testserver")])
        .get_response
    )(timeout=10)
    user = get_user_model().objects.create_superuser("admin", "admin@example.com", None)
    client = Client()
    client.force_login(user)
    results = {}
    for url in ("/admin/voiceagents/agent/add/", "/admin/voiceagents/call/",
                "/admin/voiceagents/credential/add/", "/admin/voiceagents/phonenumber/"):
        response = client.get(url)
        results[url] = response.status_code
    health = Client().get("/healthz/")
    results["/healthz/"] = health.status_code
    results["healthz_body"] = health.json() if health.status_code in (200, 503) else None
    results["asgi /healthz/"] = asgi_health["status"]
    print("SMOKE " + json.dumps(results))
    """
)


def test_readme_install_snippets_work_in_a_new_project(tmp_path):
    snippets = {marker: readme_snippet(marker) for marker in MARKERS}
    env = _clean_env()
    project = tmp_path / "project"
    project.mkdir()

    _run(["-m", "django", "startproject", "mysite", str(project)], tmp_path, env)
    package = project / "mysite"
    for name in ("settings.py", "urls.py", "asgi.py"):
        assert (package / name).is_file(), f"startproject made no mysite/{name}"

    with (package / "settings.py").open("a", encoding="utf-8") as fh:
        fh.write("\n# --- README install:settings ---\n" + snippets["install:settings"])
    with (package / "urls.py").open("a", encoding="utf-8") as fh:
        fh.write("\n# --- README install:urls ---\n" + snippets["install:urls"])
    (package / "asgi.py").write_text(snippets["install:asgi"], encoding="utf-8")

    # Without install:safety: the webhooks' host is refused, recordings would land in the project.
    check = _run(["manage.py", "check"], project, env, returncode=1)
    output = check.stdout + check.stderr
    assert "telephony.E004" in output and "'voice.example.com'" in output, output
    assert f"voiceagents.W003) Call recordings would be stored in {project.resolve()}" in output

    settings_py = package / "settings.py"
    with settings_py.open("a", encoding="utf-8") as fh:
        fh.write("\n# --- README install:safety ---\n" + snippets["install:safety"])
        fh.write("\n# --- README install:beat ---\n" + snippets["install:beat"])
    _run(["manage.py", "migrate", "--no-input", "-v", "0"], project, env)
    assert (project / "db.sqlite3").is_file(), "migrate did not create the project's own SQLite"
    check = _run(["manage.py", "check"], project, env)
    # The README's settings give a clean check: no warning from our apps in a plain project.
    assert "System check identified no issues (0 silenced)" in check.stdout, (
        check.stdout + check.stderr
    )

    # Serving MEDIA_URL as Django's docs show for development serves the recordings to anyone.
    urls_py = package / "urls.py"
    readme_urls = urls_py.read_text(encoding="utf-8")
    settings_py.write_text(
        settings_py.read_text(encoding="utf-8") + 'MEDIA_URL = "media/"\n', encoding="utf-8"
    )
    urls_py.write_text(
        readme_urls + "from django.conf import settings\n"
        "from django.conf.urls.static import static\n"
        "urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)\n",
        encoding="utf-8",
    )
    check = _run(["manage.py", "check"], project, env)
    assert "voiceagents.W004" in check.stdout + check.stderr, check.stdout + check.stderr
    urls_py.write_text(readme_urls, encoding="utf-8")

    script = f"REPO_ROOT = {str(REPO_ROOT)!r}\n" + SMOKE_SCRIPT
    proc = _run(["manage.py", "shell", "--no-imports", "-c", script], project, env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("SMOKE ")]
    assert lines, f"the smoke script printed no result\n{proc.stdout}\n{proc.stderr}"
    results = json.loads(lines[-1].removeprefix("SMOKE "))
    assert results.pop("healthz_body") == {
        "status": "ok",
        "database": "ok",
        "channel_layer": "ok",
        "live_calls": 0,
    }, proc.stderr
    assert results == {
        "/admin/voiceagents/agent/add/": 200,
        "/admin/voiceagents/call/": 200,
        "/admin/voiceagents/credential/add/": 200,
        "/admin/voiceagents/phonenumber/": 200,
        "/healthz/": 200,
        "asgi /healthz/": 200,
    }, proc.stderr
