//! The main job end to end: the embedded default config, a virtual key, a chat call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{MASTER_KEY, Options, client};
use serde_json::{Value, json};

#[tokio::test]
async fn default_config_serves_mock_through_a_virtual_key() {
    let gw = Options::new().start();
    let http = client();
    let key: Value = http
        .post(gw.url("/key/generate"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"models": ["mock/*"], "key_alias": "smoke"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = key["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("sk-"));
    let resp = http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": "mock/anything", "messages": [{"role": "user", "content": "ping"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-litellm-call-id"));
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("ping")
    );
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // A model outside the key's list is refused.
    let resp = http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn first_start_generates_master_key_file() {
    let gw = Options::new().no_master_key().start();
    let path = gw.data_path().join("master.key");
    let key = std::fs::read_to_string(&path).unwrap().trim().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(
        !gw.log().contains(&key),
        "the master key must never be logged"
    );
    let resp = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
