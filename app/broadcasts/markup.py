"""A check of Telegram's HTML formatting (Bot API, "HTML style"), so a broadcast with broken markup is refused when
it is written instead of failing for every recipient when it is sent.

Telegram takes only the tags below, closed in order; every other `<`, `>` and `&` must be written as an entity,
and only `&lt; &gt; &amp; &quot;` and numeric entities exist. Its length limit (4096) counts the text as shown,
after tags and entities are taken out, which `visible_text` gives.
"""

from __future__ import annotations

import html
import re

MAX_VISIBLE_LENGTH = 4096

# tag -> (attributes it may have, attributes it must have)
_TAGS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    **{name: (frozenset(), frozenset()) for name in ("b", "strong", "i", "em", "u", "ins", "s", "strike", "del")},
    "tg-spoiler": (frozenset(), frozenset()),
    "span": (frozenset({"class"}), frozenset({"class"})),
    "a": (frozenset({"href"}), frozenset({"href"})),
    "tg-emoji": (frozenset({"emoji-id"}), frozenset({"emoji-id"})),
    "code": (frozenset({"class"}), frozenset()),
    "pre": (frozenset(), frozenset()),
    "blockquote": (frozenset({"expandable"}), frozenset()),
}
_LINK_SCHEMES = ("http://", "https://", "tg://")

_ATTRIBUTE_TEXT = r"[A-Za-z][A-Za-z0-9-]*(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?"
_TAG = re.compile(rf"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+{_ATTRIBUTE_TEXT})*)\s*>")
_ATTRIBUTE = re.compile(r"([A-Za-z][A-Za-z0-9-]*)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'>]+)))?")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|lt|gt|amp|quot);")
_SPECIAL = re.compile(r"[<>&]")


class MarkupError(ValueError):
    """The text is not valid Telegram HTML; the message says what and where (a 1-based character position)."""


def check_html(text: str) -> None:
    """Raise MarkupError unless `text` is Telegram HTML that Telegram will accept."""
    stack: list[tuple[str, dict[str, str]]] = []
    position = 0
    while (special := _SPECIAL.search(text, position)) is not None:
        at = special.start()
        if special.group() == "&":
            entity = _ENTITY.match(text, at)
            if entity is None:
                raise MarkupError(f"'&' at character {at + 1} starts no entity Telegram knows: write it as &amp;")
            position = entity.end()
            continue
        tag = _TAG.match(text, at)
        if tag is None:
            entity_name = "&lt;" if special.group() == "<" else "&gt;"
            raise MarkupError(f"a bare '{special.group()}' at character {at + 1}: write it as {entity_name}")
        closing, name, attributes = tag.group(1) == "/", tag.group(2).lower(), tag.group(3)
        if name not in _TAGS:
            raise MarkupError(f"<{name}> at character {at + 1} is not a tag Telegram supports")
        if closing:
            if attributes.strip():
                raise MarkupError(f"the closing </{name}> at character {at + 1} has attributes")
            if not stack or stack[-1][0] != name:
                expected = f"</{stack[-1][0]}>" if stack else "no closing tag"
                raise MarkupError(f"</{name}> at character {at + 1} does not match: expected {expected}")
            stack.pop()
        else:
            parsed = _attributes(name, attributes, at)
            _check_nesting(name, parsed, stack, at)
            stack.append((name, parsed))
        position = tag.end()
    if stack:
        raise MarkupError(f"<{stack[-1][0]}> is never closed")


def visible_text(text: str) -> str:
    """The text as the reader sees it: tags removed, entities decoded (call check_html first)."""
    return html.unescape(_TAG.sub("", text))


def _attributes(name: str, raw: str, at: int) -> dict[str, str]:
    allowed, required = _TAGS[name]
    values: dict[str, str] = {}
    for match in _ATTRIBUTE.finditer(raw):
        key = match.group(1).lower()
        if key not in allowed:
            raise MarkupError(f"<{name}> at character {at + 1} cannot have the attribute {key!r}")
        value = next((group for group in match.groups()[1:] if group is not None), "")
        values[key] = html.unescape(value)
    if missing := required - values.keys():
        raise MarkupError(f"<{name}> at character {at + 1} needs the attribute {sorted(missing)[0]!r}")
    if name == "span" and values["class"] != "tg-spoiler":
        raise MarkupError(f'<span> at character {at + 1} must be <span class="tg-spoiler">')
    if name == "a" and not values["href"].lower().startswith(_LINK_SCHEMES):
        raise MarkupError(f"the link at character {at + 1} must start with http://, https:// or tg://")
    if name == "tg-emoji" and not values["emoji-id"].isdigit():
        raise MarkupError(f"<tg-emoji> at character {at + 1} needs a numeric emoji-id")
    if name == "code" and "class" in values and not values["class"].startswith("language-"):
        raise MarkupError(f'<code> at character {at + 1} may only have class="language-…"')
    return values


def _check_nesting(name: str, attributes: dict[str, str], stack: list[tuple[str, dict[str, str]]], at: int) -> None:
    open_tags = [tag for tag, _ in stack]
    if ("pre" in open_tags or "code" in open_tags) and not (name == "code" and open_tags[-1:] == ["pre"]):
        raise MarkupError(f"<{name}> at character {at + 1} is inside <pre> or <code>, which take plain text only")
    if name == "code" and "class" in attributes and open_tags[-1:] != ["pre"]:
        raise MarkupError(f"<code class> at character {at + 1}: a language is only allowed in <pre><code …>")
    if name == "a" and "a" in open_tags:
        raise MarkupError(f"a link inside a link at character {at + 1}")
    if name == "blockquote" and "blockquote" in open_tags:
        raise MarkupError(f"a quotation inside a quotation at character {at + 1}")
