//! In-process hot path of one gateway request, piece by piece (public library API only):
//! virtual-key authentication against a 100k-key cache, a bearer JWT (cached, and verified
//! from scratch), model resolution and access checks, and the JSON work done on a chat
//! request and its reply.
//!
//! `cargo bench --bench auth_route`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use portcullis::auth::{
    Authenticator, JwtAuth, KeyCache, Principal, credential, generate_key, hash_key,
};
use portcullis::config::Config;
use portcullis::limits::Ledger;
use portcullis::router::Router;
use portcullis::store::KeyRecord;
use portcullis::tenancy::{Directory, access};
use portcullis::types::Secret;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

const KEYS: usize = 100_000;

/// A key record built from JSON, so fields added later (all optional) need no change here.
fn record(secret: &str, models: &[&str]) -> KeyRecord {
    serde_json::from_value(json!({
        "token": hex::encode(hash_key(secret)),
        "key_id": hex::encode(hash_key(secret)),
        "budget": {},
        "allowed_routes": [],
        "key_type": "Default",
        "key_name": "sk-...abcd",
        "key_alias": null,
        "models": models,
        "metadata_json": "{}",
        "blocked": false,
        "spend": 0.0,
        "created_at_ms": 0,
        "updated_at_ms": 0,
        "created_by": "bench",
        "updated_by": "bench",
        "grace_tokens": [],
    }))
    .expect("a KeyRecord from JSON")
}

fn directory() -> Directory {
    Directory::new(Arc::new(Ledger::new()), HashMap::new(), &[])
}

fn authenticator(dir: &Directory) -> (Authenticator, String) {
    let cache = KeyCache::default();
    let mut probe = String::new();
    for i in 0..KEYS {
        let secret = generate_key().unwrap();
        cache.upsert(dir.key_entry(record(&secret, &["gpt-4o", "openai/*"])));
        if i == KEYS / 2 {
            probe = secret;
        }
    }
    (
        Authenticator::new(Some(&Secret::new("sk-master-bench".into())), cache),
        probe,
    )
}

fn router() -> Router {
    let mut yaml = String::from("model_list:\n");
    for i in 0..50 {
        yaml.push_str(&format!(
            "  - model_name: model-{i}\n    litellm_params:\n      model: openai/m{i}\n      api_base: http://127.0.0.1:9/v1\n      api_key: sk-x\n"
        ));
    }
    yaml.push_str("  - model_name: gpt-4o\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: sk-x\n");
    yaml.push_str("  - model_name: \"openai/*\"\n    litellm_params:\n      model: \"openai/*\"\n      api_key: sk-x\n");
    let (config, _) = Config::from_yaml(&yaml, &HashMap::new()).expect("bench config");
    Router::new(&config)
}

const REQUEST: &str = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64,"temperature":0.2}"#;
const REPLY: &str = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! The quick brown fox jumps over the lazy dog. How can I help you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":18,"total_tokens":37,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#;

fn auth(c: &mut Criterion) {
    let dir = directory();
    let (auth, probe) = authenticator(&dir);
    let mut g = c.benchmark_group("auth (100k keys)");
    g.bench_function("authenticate_secret: valid key", |b| {
        b.iter(|| auth.authenticate_secret(black_box(&probe)).unwrap())
    });
    g.bench_function("authenticate_secret: unknown key", |b| {
        b.iter(|| {
            auth.authenticate_secret(black_box("sk-not-a-key-0000000000000000000000000000"))
                .unwrap_err()
        })
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {probe}")).unwrap(),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // What `authenticate` does for a key: read the header, hash, look up (no await).
    g.bench_function("authenticate: Authorization header", |b| {
        b.iter(|| {
            let presented = credential(black_box(&headers)).unwrap();
            auth.authenticate_known(presented, &hash_key(presented))
                .unwrap()
                .unwrap()
        })
    });
    g.bench_function("hash_key (sha256)", |b| {
        b.iter(|| hash_key(black_box(&probe)))
    });
    g.finish();
    jwt(c);

    let router = router();
    let principal = auth.authenticate_secret(&probe).unwrap();
    let mut g = c.benchmark_group("route");
    g.bench_function("resolve: exact name", |b| {
        b.iter(|| router.resolve(black_box("gpt-4o")).is_some())
    });
    g.bench_function("resolve: wildcard", |b| {
        b.iter(|| router.resolve(black_box("openai/gpt-4.1-mini")).is_some())
    });
    let Principal::Key(key) = principal else {
        panic!("the probe is a virtual key")
    };
    let chain = access::chain(&dir, &key, None).unwrap();
    g.bench_function("check_model: key with 2 patterns", |b| {
        b.iter(|| access::check_model(&dir, &chain, black_box("model-49")).is_err())
    });
    g.finish();
}

/// An ES256 signing key and the JWKS publishing it.
fn es256_key() -> (jsonwebtoken::EncodingKey, String) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
        "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65])}]});
    let enc = jsonwebtoken::EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap();
    (enc, jwks.to_string())
}

fn jwt(c: &mut Criterion) {
    let (enc, jwks) = es256_key();
    let settings = portcullis::config::JwtSettings {
        key_urls: vec!["https://idp.example/jwks".into()],
        issuers: vec!["https://idp.example".into()],
        paired: false,
        audiences: vec!["portcullis".into()],
        public_key_ttl: std::time::Duration::from_secs(600),
        claims: portcullis::config::JwtClaims {
            admin_scope: "litellm_proxy_admin".into(),
            user_id: Some("sub".into()),
            team_id: Some("team".into()),
            ..Default::default()
        },
    };
    let jwt = Arc::new(JwtAuth::with_key_sets(settings, &[jwks.as_bytes()]).unwrap());
    let auth = Authenticator::new(None, KeyCache::default()).with_jwt(jwt.clone());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    let claims = json!({"iss": "https://idp.example", "aud": "portcullis", "exp": exp,
                        "sub": "ana", "team": "search"});
    let token = jsonwebtoken::encode(&header, &claims, &enc).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let digest = hash_key(&token);
    let mut g = c.benchmark_group("auth: bearer JWT");
    // The first use of a token: header, allow-list, ES256 signature, claims, cache insert.
    g.bench_function("verify: ES256, not cached", |b| {
        b.iter(|| rt.block_on(jwt.verify(black_box(&token), &digest)).unwrap())
    });
    // Every later use: sha256 + the key cache (miss) + the token cache (hit).
    g.bench_function("authenticate: cached JWT", |b| {
        b.iter(|| {
            let t = black_box(token.as_str());
            match auth.authenticate_known(t, &hash_key(t)) {
                Some(Ok(Principal::Jwt(g))) => g,
                _ => unreachable!(),
            }
        })
    });
    g.finish();
}

fn json_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("request json");
    g.bench_function("new_call_id (uuid v4)", |b| {
        b.iter(portcullis::request::new_call_id)
    });
    // What the gateway does to a chat request before it goes upstream: parse into a map,
    // write it out for the attempt without proxy-only keys and with the deployment's model.
    g.bench_function("parse + rewrite + serialize request", |b| {
        b.iter(|| {
            let body: Map<String, Value> =
                match serde_json::from_slice(black_box(REQUEST.as_bytes())) {
                    Ok(Value::Object(m)) => m,
                    _ => unreachable!(),
                };
            portcullis::providers::openai_request_body(&body, "gpt-4o", false).unwrap()
        })
    });
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Usage {
        prompt_tokens: u64,
        completion_tokens: u64,
    }
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct WithUsage {
        usage: Option<Usage>,
    }
    g.bench_function("read usage from the reply", |b| {
        b.iter(|| {
            serde_json::from_slice::<WithUsage>(black_box(REPLY.as_bytes()))
                .unwrap()
                .usage
        })
    });
    g.finish();
}

/// An OpenAI stream with `stream_options.include_usage` (which the gateway always asks the
/// upstream for): every chunk carries `"usage":null`, the last one the real usage.
fn sse_body() -> String {
    let head = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_fc9f1d7035","#;
    let mut s = String::new();
    for w in [
        "", "Hello", "!", " The", " quick", " brown", " fox", " jumps", " over", " the", " dog.",
    ] {
        s.push_str(&format!(
            "data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{w}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
    }
    s.push_str(&format!(
        "data: {head}\"choices\":[],\"usage\":{{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29}}}}\n\n"
    ));
    s.push_str("data: [DONE]\n\n");
    s
}

fn sse_path(c: &mut Criterion) {
    use portcullis::providers::sse::{SseSplitter, parse};
    let body = sse_body();
    let mut g = c.benchmark_group("sse (11 chunks + usage + DONE, one upstream read)");
    g.bench_function("split into events", |b| {
        b.iter(|| {
            SseSplitter::default()
                .push(black_box(body.as_bytes()))
                .len()
        })
    });
    // What the OpenAI passthrough does per event today: a byte-window test for "usage", which
    // `"usage":null` passes, then a full parse of the event into a serde_json::Value.
    g.bench_function(
        "split + usage test + parse each matching event as Value",
        |b| {
            b.iter(|| {
                let mut n = 0;
                for block in SseSplitter::default().push(black_box(body.as_bytes())) {
                    if block.windows(7).any(|w| w == b"\"usage\"") {
                        let event = parse(&block);
                        if let Ok(v) = serde_json::from_str::<Value>(&event.data) {
                            n += usize::from(v.get("usage").is_some_and(|u| !u.is_null()));
                        }
                    }
                }
                n
            })
        },
    );
    g.finish();
}

criterion_group!(benches, auth, json_path, sse_path);
criterion_main!(benches);
