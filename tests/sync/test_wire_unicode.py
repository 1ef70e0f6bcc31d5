"""Property: a lone surrogate anywhere in a frame is refused at parse time, nothing else is."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripsage_sync.sync.errors import InvalidMessage
from tripsage_sync.sync.wire import parse_auth_request, parse_client_message

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
# Valid text, astral characters (escaped as surrogate pairs by json.dumps) included.
TEXT = st.text(st.characters(codec="utf-8"), max_size=8)


def json_values(leaf_text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | leaf_text,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(leaf_text, children, max_size=4)
        ),
        max_leaves=12,
    )


@st.composite
def with_lone_surrogate(draw: st.DrawFn) -> Any:
    """A JSON value with one lone surrogate planted in a key or a string, at any depth."""
    bad = draw(TEXT) + draw(SURROGATES) + draw(TEXT)
    value = draw(json_values(TEXT))
    as_key = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        value = [value] if draw(st.booleans()) else {draw(TEXT): value}
    return {bad: value} if as_key else [value, bad]


def _refused_as_surrogate(text: str | bytes) -> bool:
    try:
        parse_client_message(text)
    except InvalidMessage as exc:
        return (exc.details or {}).get("received") == "lone surrogate"
    return False


@given(with_lone_surrogate(), st.booleans())
def test_a_lone_surrogate_anywhere_is_refused(value: Any, as_bytes: bool) -> None:
    text = json.dumps({"type": "chat_message", "payload": {"content": "x", "metadata": value}})
    assert "\\ud" in text.lower()
    assert _refused_as_surrogate(text.encode() if as_bytes else text)
    with pytest.raises(InvalidMessage):
        parse_auth_request(json.dumps({"token": "t", "channels": [value]}))


@given(json_values(TEXT))
def test_valid_unicode_is_never_refused_as_a_surrogate(value: Any) -> None:
    text = json.dumps({"type": "chat_message", "payload": {"content": "x", "metadata": value}})
    assert not _refused_as_surrogate(text)
    assert not _refused_as_surrogate(text.encode())
