"""The official Anthropic Python SDK against the real gateway's `/v1/messages`."""

from __future__ import annotations

import asyncio

import anthropic
import pytest

from conftest import MODEL

PROMPT = "Hello from the anthropic SDK tests"


def client(gateway, api_key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=api_key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def claude(gateway, key) -> anthropic.Anthropic:
    return client(gateway, key)


def create(c: anthropic.Anthropic, prompt: str = PROMPT, **kw):
    return c.messages.create(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": prompt}], **kw
    )


def test_messages_create(claude):
    m = create(claude)
    assert m.type == "message"
    assert m.role == "assistant"
    assert m.id
    assert m.stop_reason == "end_turn"
    assert len(m.content) == 1
    block = m.content[0]
    assert block.type == "text"
    assert PROMPT in block.text, block.text
    assert m.usage.input_tokens > 0
    assert m.usage.output_tokens > 0


def test_messages_system_and_blocks(claude):
    m = claude.messages.create(
        model=MODEL,
        max_tokens=64,
        system="You are terse.",
        messages=[
            {"role": "user", "content": "earlier"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "block content"}]},
        ],
    )
    assert "block content" in m.content[0].text


def test_messages_stream_helper(claude):
    whole = create(claude)
    with claude.messages.stream(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text
    assert final.content[0].type == "text"
    assert final.content[0].text == whole.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens


def test_messages_create_stream_events(claude):
    whole = create(claude)
    events = list(create(claude, stream=True))
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    assert types[-2] == "message_delta"
    assert "content_block_start" in types and "content_block_stop" in types
    # Blocks are properly nested: start < deltas < stop.
    start, stop = types.index("content_block_start"), types.index("content_block_stop")
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert deltas and all(start < events.index(d) < stop for d in deltas)
    text = "".join(d.delta.text for d in deltas if d.delta.type == "text_delta")
    assert text == whole.content[0].text
    delta = events[-2]
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == whole.usage.output_tokens


def test_async_messages(gateway, key):
    async def run():
        async with anthropic.AsyncAnthropic(
            base_url=gateway.url, api_key=key, max_retries=0, timeout=30
        ) as c:
            replies = await asyncio.gather(
                *(
                    c.messages.create(
                        model=MODEL,
                        max_tokens=32,
                        messages=[{"role": "user", "content": f"async {i}"}],
                    )
                    for i in range(10)
                )
            )
            async with c.messages.stream(
                model=MODEL, max_tokens=32, messages=[{"role": "user", "content": "astream"}]
            ) as s:
                text = await s.get_final_text()
            return replies, text

    replies, text = asyncio.run(run())
    for i, m in enumerate(replies):
        assert m.content[0].text.endswith(f"async {i}")
    assert "astream" in text


def _error_body(exc: anthropic.APIStatusError) -> dict:
    body = exc.response.json()
    assert body.get("type") == "error", body
    err = body["error"]
    assert isinstance(err.get("type"), str) and err["type"], err
    assert isinstance(err.get("message"), str) and err["message"], err
    return err


def test_bad_key_is_authentication_error(gateway):
    with pytest.raises(anthropic.AuthenticationError) as e:
        create(client(gateway, "sk-not-a-real-key-000000000"))
    assert e.value.status_code == 401
    assert _error_body(e.value)["type"] == "authentication_error"


def test_unknown_model_is_not_found(gateway, any_model_key):
    with pytest.raises(anthropic.NotFoundError) as e:
        client(gateway, any_model_key).messages.create(
            model="no-such-model", max_tokens=16, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 404
    err = _error_body(e.value)
    assert err["type"] == "not_found_error"
    assert "no-such-model" in err["message"]


def test_model_not_allowed_is_permission_denied(gateway, mini_key):
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        create(client(gateway, mini_key))
    assert e.value.status_code == 403
    assert _error_body(e.value)["type"] == "permission_error"


def test_missing_max_tokens_is_bad_request(claude):
    # The SDK's signature requires max_tokens; omit it explicitly to reach the server's check.
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(
            model=MODEL, max_tokens=anthropic.omit, messages=[{"role": "user", "content": "x"}]
        )
    err = _error_body(e.value)
    assert err["type"] == "invalid_request_error"
    assert "max_tokens" in err["message"]
