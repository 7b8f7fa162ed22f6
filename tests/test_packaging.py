"""The license that pyproject.toml declares ships with the code.

Building a wheel needs setuptools 77+ in an isolated environment (network or a local index), so
this checks what the build reads: ``license-files`` names files that exist and say BSD-3-Clause.
The wheel itself was checked by hand: ``pip wheel . -w /tmp/w --no-deps`` puts ``LICENSE`` under
``django_voiceagents-*.dist-info/licenses/`` and ``License-File: LICENSE`` in ``METADATA``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_declared_license_file_is_in_the_repository():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "BSD-3-Clause"
    files = project["license-files"]
    assert files == ["LICENSE"]
    text = (REPO_ROOT / files[0]).read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) django-voiceagents contributors" in text
    assert "Neither the name of the copyright holder" in text  # the third clause
