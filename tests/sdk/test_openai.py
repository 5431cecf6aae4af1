"""The official OpenAI Python SDK against the real gateway (default config, mock provider)."""

from __future__ import annotations

import asyncio
import base64
import math
import struct

import openai
import pytest

from conftest import MODEL, api

PROMPT = "Say hello to the portcullis SDK tests"


def client(gateway, api_key: str) -> openai.OpenAI:
    # No retries: a gateway error must surface as the first answer, not be papered over.
    return openai.OpenAI(base_url=gateway.base_url, api_key=api_key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def oai(gateway, key) -> openai.OpenAI:
    return client(gateway, key)


def ask(oai: openai.OpenAI, prompt: str = PROMPT, **kw):
    return oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], **kw
    )


# --- chat -----------------------------------------------------------------------------------


def test_chat_completion(oai):
    r = ask(oai)
    assert r.object == "chat.completion"
    assert r.id
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert PROMPT in choice.message.content, choice.message.content
    assert r.usage is not None
    assert r.usage.prompt_tokens > 0
    assert r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_is_deterministic_per_prompt(oai):
    a = ask(oai, "first prompt").choices[0].message.content
    b = ask(oai, "second prompt").choices[0].message.content
    assert a != b
    assert a == ask(oai, "first prompt").choices[0].message.content


def test_chat_stream_matches_non_streamed(oai):
    whole = ask(oai).choices[0].message.content
    chunks = list(ask(oai, stream=True))
    assert chunks, "no chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    # Without stream_options.include_usage there is no usage-only chunk with empty choices.
    assert all(len(c.choices) == 1 for c in chunks), [c.choices for c in chunks]
    assert all(c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == whole
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1, "all chunks of one completion share its id"


def test_chat_stream_include_usage(oai):
    whole = ask(oai)
    chunks = list(ask(oai, stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.usage.total_tokens == whole.usage.total_tokens
    # Only the final chunk carries usage; the content chunks still spell the whole answer.
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == whole.choices[0].message.content


def test_chat_stream_context_manager_closes(oai):
    # Streams used as context managers (the SDK's recommended form) close cleanly after one chunk.
    with ask(oai, stream=True) as stream:
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
    # The connection is reusable afterwards.
    assert PROMPT in ask(oai).choices[0].message.content


def test_chat_mock_response(oai):
    r = ask(oai, extra_body={"mock_response": "fixed answer"})
    assert r.choices[0].message.content == "fixed answer"


# --- completions, embeddings, models ---------------------------------------------------------


def test_completion(oai):
    r = oai.completions.create(model=MODEL, prompt="complete this", max_tokens=16)
    assert r.object == "text_completion"
    assert len(r.choices) == 1
    assert "complete this" in r.choices[0].text
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


def test_completion_stream(oai):
    whole = oai.completions.create(model=MODEL, prompt="stream this").choices[0].text
    chunks = list(oai.completions.create(model=MODEL, prompt="stream this", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole


def _assert_unit_vector(v, dims):
    assert isinstance(v, list), type(v)
    assert len(v) == dims
    assert all(isinstance(x, float) for x in v)
    assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-3)


def test_embeddings_default_encoding(oai):
    # The SDK asks for base64 by default and decodes it back to floats; a gateway that answers
    # floats anyway is also decoded (left alone) by the SDK. Either way the caller sees floats.
    r = oai.embeddings.create(model=MODEL, input=["alpha", "beta"])
    assert r.object == "list"
    assert [d.index for d in r.data] == [0, 1]
    for d in r.data:
        _assert_unit_vector(d.embedding, 1536)
    assert r.data[0].embedding != r.data[1].embedding
    assert r.usage.prompt_tokens > 0


def test_embeddings_float_and_default_agree(oai):
    default = oai.embeddings.create(model=MODEL, input="same text").data[0].embedding
    floats = oai.embeddings.create(model=MODEL, input="same text", encoding_format="float")
    _assert_unit_vector(floats.data[0].embedding, 1536)
    # base64 carries float32: agree to float32 precision.
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(default, floats.data[0].embedding))


def test_embeddings_dimensions(oai):
    r = oai.embeddings.create(model=MODEL, input="short", dimensions=16)
    _assert_unit_vector(r.data[0].embedding, 16)
    r = oai.embeddings.create(model=MODEL, input="short", dimensions=16, encoding_format="float")
    _assert_unit_vector(r.data[0].embedding, 16)


def test_embeddings_explicit_base64(oai):
    # Asked explicitly, the SDK hands back what the server sent; OpenAI sends a base64 string of
    # little-endian float32. A list of floats here means the gateway ignored `encoding_format`.
    r = oai.embeddings.create(model=MODEL, input="b64", dimensions=16, encoding_format="base64")
    emb = r.data[0].embedding
    assert isinstance(emb, str), f"encoding_format=base64 answered {type(emb).__name__}: {emb!r:.80}"
    raw = base64.b64decode(emb)
    assert len(raw) == 16 * 4
    _assert_unit_vector(list(struct.unpack("<16f", raw)), 16)


def test_models_list_only_allowed(gateway, key, mini_key):
    ids = {m.id for m in client(gateway, key).models.list()}
    assert ids == {"mock/*"}
    ids = {m.id for m in client(gateway, mini_key).models.list()}
    assert ids == {"gpt-4o-mini"}
    page = client(gateway, mini_key).models.list()
    assert all(m.object == "model" for m in page.data)


def test_models_retrieve(gateway, mini_key):
    c = client(gateway, mini_key)
    assert c.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    # A model the key may not use is reported as absent.
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("mock/x")


def test_raw_response_headers(oai):
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "headers"}]
    )
    call_id = raw.headers.get("x-litellm-call-id")
    assert call_id, dict(raw.headers)
    assert raw.headers.get("x-litellm-model-group") == "mock/*"
    assert raw.headers.get("content-type", "").startswith("application/json")
    assert raw.status_code == 200
    assert "headers" in raw.parse().choices[0].message.content
    again = oai.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "headers"}]
    )
    assert again.headers.get("x-litellm-call-id") != call_id, "call ids are per call"


def test_streaming_response_headers(oai):
    with oai.chat.completions.with_streaming_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    ) as resp:
        assert resp.headers.get("content-type", "").startswith("text/event-stream")
        assert resp.headers.get("x-litellm-call-id")
        assert "hi" in "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)


# --- errors -----------------------------------------------------------------------------------


def _error_body(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err.get("message"), str) and err["message"], err
    assert isinstance(err.get("type"), str) and err["type"], err
    assert isinstance(err.get("code"), str) and err["code"], err
    assert "param" in err, err
    # The SDK surfaces the same fields.
    assert err["message"] in exc.message
    assert exc.code == err["code"]
    assert exc.type == err["type"]
    assert exc.response.headers.get("x-litellm-call-id")
    return err


def test_bad_key_is_authentication_error(gateway):
    with pytest.raises(openai.AuthenticationError) as e:
        ask(client(gateway, "sk-not-a-real-key-000000000"))
    assert e.value.status_code == 401
    err = _error_body(e.value)
    assert err["type"] == "authentication_error"


def test_bad_key_on_models_and_embeddings(gateway):
    c = client(gateway, "sk-not-a-real-key-000000000")
    with pytest.raises(openai.AuthenticationError):
        c.models.list()
    with pytest.raises(openai.AuthenticationError):
        c.embeddings.create(model=MODEL, input="x")


def test_model_not_allowed_is_permission_denied(gateway, mini_key):
    with pytest.raises(openai.PermissionDeniedError) as e:
        ask(client(gateway, mini_key))
    assert e.value.status_code == 403
    err = _error_body(e.value)
    assert err["type"] == "permission_error"
    assert err["code"] == "model_not_allowed"
    assert err["param"] == "model"
    assert MODEL in err["message"]


def test_unknown_model_is_not_found(gateway, any_model_key):
    c = client(gateway, any_model_key)
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert e.value.status_code == 404
    err = _error_body(e.value)
    assert err["code"] == "model_not_found"
    assert err["param"] == "model"
    assert "no-such-model" in err["message"]


def test_missing_messages_is_bad_request(oai):
    # The SDK's signature requires `messages`; `omit` leaves it out of the request body.
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODEL, messages=openai.omit)  # type: ignore[arg-type]
    assert e.value.status_code == 400
    err = _error_body(e.value)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == "messages"
    assert "messages" in err["message"]


def test_empty_messages_is_bad_request(oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODEL, messages=[])
    err = _error_body(e.value)
    assert err["param"] == "messages"


def test_missing_embedding_input_is_bad_request(oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model=MODEL, input=[])
    assert _error_body(e.value)["param"] == "input"


def test_master_key_may_use_everything(gateway):
    c = client(gateway, gateway.master_key)
    assert PROMPT in ask(c).choices[0].message.content
    r = c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "mini"}]
    )
    assert "mini" in r.choices[0].message.content


def test_key_generate_over_urllib_answers_usable_key(gateway, make_key):
    k = make_key(models=["gpt-4o-mini"], key_alias="sdk-urllib-check")
    status, body, _ = api(gateway, "GET", "/v1/models", token=k)
    assert status == 200
    assert [m["id"] for m in body["data"]] == ["gpt-4o-mini"]


# --- Azure ------------------------------------------------------------------------------------


def azure(gateway, api_key: str) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=gateway.url,
        api_key=api_key,
        api_version="2024-10-21",
        max_retries=0,
        timeout=30,
    )


def test_azure_chat(gateway, mini_key):
    c = azure(gateway, mini_key)
    raw = c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "azure hello"}]
    )
    assert raw.http_request.url.path == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert raw.http_request.url.params.get("api-version") == "2024-10-21"
    # AzureOpenAI authenticates with the `api-key` header, not a bearer token.
    assert raw.http_request.headers.get("api-key") == mini_key
    assert "authorization" not in raw.http_request.headers
    r = raw.parse()
    assert "azure hello" in r.choices[0].message.content
    assert r.usage.prompt_tokens > 0


def test_azure_stream_and_embeddings(gateway, mini_key):
    c = azure(gateway, mini_key)
    text = "".join(
        ch.choices[0].delta.content or ""
        for ch in c.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "azure"}], stream=True
        )
        if ch.choices
    )
    assert "azure" in text
    e = c.embeddings.create(model="gpt-4o-mini", input="azure", dimensions=8)
    _assert_unit_vector(e.data[0].embedding, 8)


def test_azure_model_with_slash(gateway, key):
    # The SDK percent-encodes the deployment segment: /openai/deployments/mock%2Fazure/...
    raw = azure(gateway, key).chat.completions.with_raw_response.create(
        model="mock/azure", messages=[{"role": "user", "content": "slash"}]
    )
    assert "/openai/deployments/mock%2Fazure/chat/completions" in str(raw.http_request.url)
    assert raw.headers.get("x-litellm-model-group") == "mock/*"
    assert raw.parse().choices[0].message.content.endswith("slash")


def test_azure_deployment_client(gateway, mini_key):
    c = openai.AzureOpenAI(
        azure_endpoint=gateway.url,
        azure_deployment="gpt-4o-mini",
        api_key=mini_key,
        api_version="2024-10-21",
        max_retries=0,
    )
    r = c.chat.completions.create(model="ignored-by-path", messages=[{"role": "user", "content": "d"}])
    assert r.choices[0].message.content.endswith("d")


def test_azure_errors(gateway, key):
    with pytest.raises(openai.AuthenticationError):
        azure(gateway, "sk-not-a-real-key-000000000").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.PermissionDeniedError):
        azure(gateway, key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )


# --- async ------------------------------------------------------------------------------------


def test_async_concurrent_chats(gateway, key):
    async def run():
        async with openai.AsyncOpenAI(
            base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30
        ) as c:
            prompts = [f"concurrent prompt {i}" for i in range(20)]
            results = await asyncio.gather(
                *(
                    c.chat.completions.create(
                        model=MODEL, messages=[{"role": "user", "content": p}]
                    )
                    for p in prompts
                ),
                return_exceptions=True,
            )
            return prompts, results

    prompts, results = asyncio.run(run())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert len(results) == 20
    for p, r in zip(prompts, results):
        # Each answer belongs to its own request (no cross-talk between concurrent calls).
        assert r.choices[0].message.content.endswith(p), (p, r.choices[0].message.content)
    assert len({r.id for r in results}) == 20


def test_async_stream(gateway, key):
    async def run():
        async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0) as c:
            stream = await c.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "async stream"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            return [ch async for ch in stream]

    chunks = asyncio.run(run())
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert "async stream" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
