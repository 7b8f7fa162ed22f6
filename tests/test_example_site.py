"""The example project (patter_site) starts quietly and points people to the admin.

A start of ``make demo`` printed ``telephony.W001`` (no PUBLIC_URL) from ``migrate`` and
``voiceagents_demo``, the simulated caller printed it once more, and kombu warned "No hostname
was supplied" when the ASGI app warmed Celery up: none of it was anything to act on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def example_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The example project's own settings, nothing of the test run's environment."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "VOICEAGENTS_", "CELERY_"))
        and key not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "MEDIA_ROOT"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="patter_site.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PYTHONDONTWRITEBYTECODE="1",
        **extra,
    )
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_site_root_redirects_to_the_admin(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_the_beat_schedule_runs_the_maintenance_tasks(settings):
    from celery import current_app

    import voiceagents.tasks  # noqa: F401 - registers the tasks

    schedule = {e["task"]: e["schedule"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule == {
        "voiceagents.recover_lost_calls": 60.0,
        "voiceagents.reconcile_stale_calls": 300.0,
        "voiceagents.prune_processed_webhook_events": 86400.0,
        "voiceagents.purge_expired_call_content": 86400.0,
    }
    assert set(schedule) <= set(current_app.tasks)


def test_the_asgi_app_starts_without_a_kombu_warning(tmp_path):
    done = run([sys.executable, "-c", "import patter_site.asgi"], example_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "froze" in done.stderr  # it got as far as warming Celery up
    assert "No hostname was supplied" not in done.stderr, done.stderr
    assert "WARNING" not in done.stderr, done.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_every_command_of_make_demo_gets_the_public_url():
    dotenv = REPO_ROOT / ".env"
    if dotenv.is_file() and "VOICEAGENTS_PUBLIC_URL=" in dotenv.read_text():
        pytest.skip(".env names a public URL: the Makefile leaves it to the settings")
    done = subprocess.run(
        ["make", "-n", "demo", "PORT=8123", "VOICEAGENTS_PUBLIC_URL="],
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if k != "VOICEAGENTS_PUBLIC_URL"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    commands = [line for line in done.stdout.splitlines() if "manage.py" in line]
    assert [c.split(" manage.py ")[1].split()[0] for c in commands] == [
        "migrate",
        "voiceagents_demo",
        "runserver",
    ], done.stdout
    for command in commands:
        assert command.startswith("VOICEAGENTS_PUBLIC_URL=http://127.0.0.1:8123 "), command


def test_the_demo_start_checks_are_quiet(tmp_path):
    env = example_env(tmp_path, VOICEAGENTS_PUBLIC_URL="http://127.0.0.1:8123")
    done = run([sys.executable, "manage.py", "check"], env)
    assert done.returncode == 0, done.stderr
    assert "WARNINGS" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_the_simulated_caller_does_not_check_the_servers_settings(tmp_path):
    # Its own terminal has no PUBLIC_URL; the server it calls has one.
    done = run(
        [
            sys.executable,
            "manage.py",
            "voiceagents_call_simulate",
            "--agent",
            "nobody",
            "--server",
            "http://127.0.0.1:9",
        ],
        example_env(tmp_path),
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0  # no such agent (nor database): it stops at once
    assert "telephony.W001" not in output and "System check" not in output, output
