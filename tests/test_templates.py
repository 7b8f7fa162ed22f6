"""The project-level ``templates/`` folder: the demo site's admin branding."""

from pathlib import Path

import pytest
from django.urls import reverse

ROOT = Path(__file__).resolve().parent.parent
BASE_SITE = ROOT / "templates" / "admin" / "base_site.html"


def _origins(response) -> set[str]:
    return {template.origin.name for template in response.templates if template.origin}


@pytest.mark.django_db
def test_admin_index_renders_the_project_branding_with_a_health_link(admin_client):
    response = admin_client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert str(BASE_SITE) in _origins(response)
    html = response.content.decode()
    assert '<div id="site-name"><a href="/admin/">Voice agents</a></div>' in html
    assert f'href="{reverse("voiceagents:healthz")}"' in html
    assert "Django administration" not in html


@pytest.mark.django_db
def test_admin_login_page_uses_the_same_branding(client):
    response = client.get(reverse("admin:login"))

    assert response.status_code == 200
    assert str(BASE_SITE) in _origins(response)
    assert "| Voice agents</title>" in response.content.decode()
