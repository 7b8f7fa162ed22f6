"""The example project: migrations in sync, the demo command, and `check --deploy`."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from voiceagents.models import Agent, Credential

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_migrations_are_in_sync_with_models():
    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())


@pytest.mark.django_db
def test_demo_command_is_idempotent_and_uses_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-demo-key-0123456789")
    monkeypatch.setenv("VOICEAGENTS_ADMIN_PASSWORD", "a-long-demo-password")
    for _ in range(2):
        call_command("voiceagents_demo", stdout=StringIO())
    agent = Agent.objects.get(slug="demo")
    assert agent.credential.secret == "sk-demo-key-0123456789"
    assert Credential.objects.count() == 1
    assert get_user_model().objects.filter(username="admin", is_superuser=True).count() == 1
    agent.full_clean()


@pytest.mark.django_db
def test_demo_command_explains_how_to_create_an_admin(monkeypatch):
    monkeypatch.delenv("VOICEAGENTS_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = StringIO()
    call_command("voiceagents_demo", stdout=out)
    assert "manage.py createsuperuser" in out.getvalue()
    assert "OPENAI_API_KEY" in out.getvalue()


def production_env(**extra):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "VOICEAGENTS_", "SECURE_"))
        and key not in {"DEBUG", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="patter_site.settings",
        DEBUG="0",
        SECRET_KEY="prod-" + "k7Q2x9Lm4Vn8Rt6Yp3Wz" * 3,
        ALLOWED_HOSTS="voice.example.com",
        DATABASE_URL="postgres://voice@127.0.0.1:5432/voice",
        REDIS_URL="redis://127.0.0.1:6379/0",
        VOICEAGENTS_PUBLIC_URL="https://voice.example.com",
        **extra,
    )
    return env


def run_manage(*args, env):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_with_production_environment_prints_no_warnings():
    result = run_manage("check", "--deploy", env=production_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNINGS" not in output and "ERRORS" not in output, output
    assert "System check identified no issues" in output


def test_check_deploy_warns_about_the_in_memory_layer_without_redis():
    env = production_env()
    env.pop("REDIS_URL")
    result = run_manage("check", "--deploy", env=env)
    assert "voiceagents.W002" in result.stdout + result.stderr


def test_production_settings_refuse_to_start_without_secret_key():
    env = production_env()
    env.pop("SECRET_KEY")
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
