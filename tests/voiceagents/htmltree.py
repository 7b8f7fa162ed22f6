"""A small tree of an HTML page, enough to find elements by class and read their text.

The admin pages are well-formed enough for ``html.parser``; void elements (``<br>``, ``<img>``,
``<input>``...) have no children.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    children: list[Element | str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    @property
    def text(self) -> str:
        """The text inside, whitespace collapsed."""
        parts = [c if isinstance(c, str) else c.text for c in self.children]
        return " ".join(" ".join(parts).split())

    def all(self, class_: str | None = None, tag: str | None = None) -> list[Element]:
        """Every element below this one with ``class_`` (and ``tag``), in document order."""
        found = []
        for child in self.children:
            if isinstance(child, str):
                continue
            if (class_ is None or class_ in child.classes) and (tag is None or child.tag == tag):
                found.append(child)
            found.extend(child.all(class_, tag))
        return found

    def one(self, class_: str | None = None, tag: str | None = None) -> Element:
        [element] = self.all(class_, tag)
        return element

    def by_id(self, id_: str) -> Element:
        [element] = [e for e in self.all() if e.attrs.get("id") == id_]
        return element


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs))
        self.stack[-1].children.append(element)
        if tag not in _VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Element(tag, dict(attrs)))

    def handle_endtag(self, tag):
        # Close up to the matching element (tolerates an unclosed <p> or <li>).
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Element:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root
