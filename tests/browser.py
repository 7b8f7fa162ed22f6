"""What the browser tests share: Debian's chromium driven by the pip ``playwright`` package.

``playwright install`` cannot download browsers on our machines, so tests launch the system's
``/usr/bin/chromium``. A test module sets ``pytestmark = BROWSER_MARKS`` (plus its own), launches
with ``launch(playwright)``, logs in with ``log_in`` and may keep what a reviewer should look at
with ``save_screenshot`` (under ``var/screenshots/``, which git ignores). The ``asgi_server``
fixture (tests/conftest.py) serves the project's ASGI application when a test needs its sockets.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct-horse-battery-staple"
#: Opens a WebSocket from the page to a path of its host and resolves with the close code it gets.
SOCKET_CLOSE_CODE = """path => new Promise(resolve => {
    const socket = new WebSocket(`ws://${location.host}${path}`);
    socket.onclose = event => resolve(event.code);
})"""
#: Where screenshots for reviewers go: the repository's ``var/screenshots/`` (not committed).
SCREENSHOTS = Path(__file__).resolve().parents[1] / "var" / "screenshots"

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium)",
    ),
]


def launch(playwright, *extra_args: str):
    """Headless chromium with the flags our sandboxes need (and any extra ones)."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args], headless=True
    )


def log_in(page, base_url: str, username: str, next_path: str, password: str = PASSWORD) -> None:
    """Log in through the admin's login form and wait until ``next_path`` has loaded."""
    page.goto(f"{base_url}{reverse('admin:login')}?{urlencode({'next': next_path})}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(base_url + next_path)


def session_cookie(user, base_url: str) -> dict:
    """A session cookie of ``user``, logged in, for playwright's ``add_cookies`` on ``base_url``.

    It writes the session, so call it before playwright starts (Django refuses ORM calls inside
    playwright's event loop).
    """
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    return {"name": settings.SESSION_COOKIE_NAME, "value": session, "url": base_url}


def save_screenshot(page, name: str) -> Path:
    """A full-page PNG under ``var/screenshots/<name>.png`` for a reviewer; returns its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path
