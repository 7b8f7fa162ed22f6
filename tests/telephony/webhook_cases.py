"""The webhook-security contract every carrier webhook passes.

A carrier's test module star-imports these tests and provides a ``webhook`` fixture: a
``WebhookHarness`` for one endpoint (parametrize the fixture to cover each endpoint). The harness
knows how the carrier signs; these tests know what must hold for every carrier: valid signatures
accepted, wrong or missing ones refused with 403, a missing secret answered 503 with the setting
named, rotation, CSRF and ``LoginRequiredMiddleware`` out of the way, and the signed URL following
``PUBLIC_URL``.
"""

from __future__ import annotations

import logging
from typing import Protocol

import pytest
from django.http import HttpResponse
from django.test import Client

#: Every secret a test signs with; the harness turns them into carrier-shaped secrets if needed.
SECRET = "contract-secret-0123456789abcdef"
ROTATED_SECRET = "contract-secret-fedcba9876543210"
OTHER_PUBLIC_URL = "https://other-host.example.test"


class WebhookHarness(Protocol):
    """How the contract talks to one carrier endpoint."""

    #: The settings key that a 503 must name when no secret is configured.
    secret_setting: str

    def install_secret(self, secret: str) -> None:
        """Configure the server so that requests signed with ``secret`` verify."""

    def send(
        self,
        client: Client,
        *,
        secret: str | None,
        public_url: str | None = None,
        tamper: bool = False,
    ) -> HttpResponse:
        """Send one genuine-looking webhook signed with ``secret`` (None: unsigned) for the URL
        ``public_url + path`` (default: the configured PUBLIC_URL); ``tamper`` alters the body
        after signing."""

    def accepted(self, response: HttpResponse) -> bool:
        """Whether ``response`` is the endpoint's success answer."""


@pytest.mark.django_db
def test_accepts_a_valid_signature(webhook, client):
    webhook.install_secret(SECRET)
    response = webhook.send(client, secret=SECRET)
    assert webhook.accepted(response), response.content


@pytest.mark.django_db
def test_rejects_a_signature_made_with_another_secret(webhook, client):
    webhook.install_secret(SECRET)
    assert webhook.send(client, secret=ROTATED_SECRET).status_code == 403


@pytest.mark.django_db
def test_rejects_a_missing_signature(webhook, client):
    webhook.install_secret(SECRET)
    assert webhook.send(client, secret=None).status_code == 403


@pytest.mark.django_db
def test_rejects_a_body_changed_after_signing(webhook, client):
    webhook.install_secret(SECRET)
    assert webhook.send(client, secret=SECRET, tamper=True).status_code == 403


@pytest.mark.django_db
def test_missing_secret_answers_503_naming_the_setting(webhook, client, caplog):
    with caplog.at_level(logging.ERROR):
        response = webhook.send(client, secret=SECRET)
    assert response.status_code == 503
    assert webhook.secret_setting in response.content.decode()
    assert any(
        r.levelno == logging.ERROR and webhook.secret_setting in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.django_db
def test_accepts_every_secret_during_a_rotation(webhook, client):
    webhook.install_secret(SECRET)
    webhook.install_secret(ROTATED_SECRET)
    assert webhook.accepted(webhook.send(client, secret=SECRET))
    assert webhook.accepted(webhook.send(client, secret=ROTATED_SECRET))


@pytest.mark.django_db
def test_enforced_csrf_checks_do_not_block_the_carrier(webhook):
    webhook.install_secret(SECRET)
    response = webhook.send(Client(enforce_csrf_checks=True), secret=SECRET)
    assert webhook.accepted(response), response.content


@pytest.mark.django_db
def test_login_required_middleware_does_not_block_the_carrier(webhook, client, settings):
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    ]
    webhook.install_secret(SECRET)
    response = webhook.send(client, secret=SECRET)
    assert webhook.accepted(response), response.content


@pytest.mark.django_db
def test_signed_url_follows_the_public_url_setting(webhook, client, voiceagents_settings):
    webhook.install_secret(SECRET)
    voiceagents_settings["PUBLIC_URL"] = OTHER_PUBLIC_URL + "/"
    assert webhook.accepted(webhook.send(client, secret=SECRET, public_url=OTHER_PUBLIC_URL))
    assert webhook.send(client, secret=SECRET).status_code == 403


@pytest.mark.django_db
def test_rejection_is_logged_as_a_warning_without_the_signature(webhook, client, caplog):
    webhook.install_secret(SECRET)
    with caplog.at_level(logging.WARNING, logger="telephony.security"):
        response = webhook.send(client, secret=ROTATED_SECRET)
    assert response.status_code == 403
    records = [r for r in caplog.records if r.name == "telephony.security"]
    assert records and all(r.levelno == logging.WARNING for r in records)
    sent = {value for name, value in response.request.items() if name.startswith("HTTP_")}
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert not any(value and value in logged for value in sent if len(value) > 16)


@pytest.mark.django_db
def test_disabling_verification_accepts_unsigned_requests(webhook, client, voiceagents_settings):
    voiceagents_settings["VERIFY_SIGNATURES"] = False
    assert webhook.accepted(webhook.send(client, secret=None))


@pytest.mark.django_db
def test_get_is_not_allowed(webhook, client):
    webhook.install_secret(SECRET)
    response = webhook.send(client, secret=SECRET)
    assert client.get(response.request["PATH_INFO"]).status_code == 405
