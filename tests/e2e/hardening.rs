//! Abuse that a shared gateway must survive: idle sockets, stalled uploads, secrets that would
//! collide with one another, rotations that must revoke everything before them.

use crate::harness::{MASTER_KEY, Options};
use crate::keys::{Api, secret_of};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection; how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn idle_and_stalled_connections_are_closed() {
    let gw = Options::new()
        .config("model_list:\n  - model_name: \"mock/*\"\n    litellm_params: {model: \"mock/*\"}\ngeneral_settings:\n  idle_timeout: 1\n")
        .start();

    // A connection that never sends a byte.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(10))
            .await
            .is_some(),
        "a silent connection stays open"
    );

    // A request whose body stops arriving: 408, and the connection goes.
    let mut stalled = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\""
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a stalled upload is never answered");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");

    // A keep-alive connection that goes quiet after a request is closed too, and the server is
    // still there for everyone else.
    let mut quiet = TcpStream::connect(gw.addr).await.unwrap();
    quiet
        .write_all(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut quiet, Duration::from_secs(10))
            .await
            .is_some()
    );
    let resp = crate::harness::client()
        .get(gw.url("/health/readiness"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_rotation_without_grace_revokes_every_earlier_secret() {
    let api = Api::start();
    let (_, k) = api
        .post("/key/generate", json!({"models": ["mock/*"]}))
        .await;
    let s1 = secret_of(&k);
    let (st, k) = api
        .post("/key/regenerate", json!({"key": s1, "grace_period": "1h"}))
        .await;
    assert_eq!(st, 200, "{k}");
    let s2 = secret_of(&k);
    assert_eq!(
        api.get_as(&s1, "/v1/models").await.0,
        200,
        "in its grace period"
    );
    let (st, k) = api.post("/key/regenerate", json!({"key": s2})).await;
    assert_eq!(st, 200, "{k}");
    let s3 = secret_of(&k);
    assert_eq!(
        api.get_as(&s1, "/v1/models").await.0,
        401,
        "the older grace secret must die too"
    );
    assert_eq!(api.get_as(&s2, "/v1/models").await.0, 401);
    assert_eq!(api.get_as(&s3, "/v1/models").await.0, 200);
}

#[tokio::test]
async fn a_new_secret_may_not_be_one_that_already_authenticates() {
    let api = Api::start();
    let (_, a) = api
        .post("/key/generate", json!({"models": ["gpt-4o-mini"]}))
        .await;
    let p1 = secret_of(&a);
    let (_, a2) = api
        .post("/key/regenerate", json!({"key": p1, "grace_period": "1h"}))
        .await;
    let p2 = secret_of(&a2);
    // The replaced secret still authenticates as A: nobody else may take it.
    let (st, body) = api
        .post("/key/generate", json!({"key": p1, "models": ["mock/*"]}))
        .await;
    assert_eq!(st, 409, "{body}");
    let (st, body) = api
        .post("/key/regenerate", json!({"key": p2, "new_key": p1}))
        .await;
    assert_eq!(st, 409, "{body}");
    // Nor the master key.
    let (st, body) = api.post("/key/generate", json!({"key": MASTER_KEY})).await;
    assert_eq!(st, 409, "{body}");
    // The grace secret still names A, with A's models.
    let (st, models) = api.get_as(&p1, "/v1/models").await;
    assert_eq!(st, 200);
    assert_eq!(models["data"][0]["id"], "gpt-4o-mini", "{models}");
}

#[tokio::test]
async fn request_bodies_share_a_memory_budget() {
    // Room for one 10 KB body at a time; a second has to wait, then gets 503.
    let gw = Options::new()
        .config("model_list:\n  - model_name: \"mock/*\"\n    litellm_params: {model: \"mock/*\"}\ngeneral_settings:\n  idle_timeout: 1\n  max_request_size_mb: 0.0097\n  max_buffered_request_mb: 0.0097\n")
        .start();
    // The first upload holds the whole budget while it trickles in.
    let mut holder = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{{"
    );
    holder.write_all(head.as_bytes()).await.unwrap();
    let keep_alive = async {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if holder.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let http = crate::harness::client();
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        http.post(gw.url("/v1/chat/completions"))
            .bearer_auth(MASTER_KEY)
            .header("content-type", "application/json")
            .body(format!(
                "{{\"model\": \"mock/x\", \"messages\": [{{\"role\": \"user\", \"content\": \"{}\"}}]}}",
                "y".repeat(5000)
            ))
            .send()
            .await
            .unwrap()
    };
    let ((), resp) = tokio::join!(keep_alive, second);
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "server_busy", "{body}");
    drop(holder);
    // Once the budget is free again, the same request goes through.
    let ok = crate::harness::eventually_async(Duration::from_secs(10), || async {
        http.post(gw.url("/v1/chat/completions"))
            .bearer_auth(MASTER_KEY)
            .json(&json!({"model": "mock/x", "messages": [{"role": "user", "content": "y".repeat(5000)}]}))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ok, "the budget was not given back");
}

#[test]
fn a_port_in_use_is_refused_not_shared() {
    let first = Options::new().start();
    let (status, log) = Options::new()
        .paths_via_env()
        .env("PORTCULLIS_LISTEN", first.addr.to_string())
        .start_expect_failure();
    assert!(
        !status.success(),
        "a second server took the same port:\n{log}"
    );
    assert!(log.contains("cannot listen"), "{log}");
}
