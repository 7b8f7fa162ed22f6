"""Fill ``{name}`` placeholders in prompts and first messages.

Only placeholders whose name is a known variable are replaced. Everything else, including JSON
examples with braces inside a system prompt, is left exactly as written, unlike ``str.format``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_placeholders(text: str, variables: Mapping[str, object]) -> str:
    if not text or not variables:
        return text or ""

    def replace(match: re.Match) -> str:
        name = match.group(1)
        return str(variables[name]) if name in variables else match.group(0)

    return PLACEHOLDER_RE.sub(replace, text)


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER_RE.findall(text or ""))
