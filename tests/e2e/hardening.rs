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
