//! The process around the API: state surviving restarts, refusing data files that are not ours
//! (without touching them), health probes, SIGTERM drain, TLS (HTTP/2 and HTTP/1.1, TLS 1.2 and
//! 1.3), SIGHUP certificate reload, the `check-config` CLI, environment overrides, and secrets
//! kept out of the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{self, MASTER_KEY, Options, client};
use crate::keys::{Api, secret_of, sha256_hex};
use crate::upstream::{DEFAULT_UPSTREAM_KEY, FakeUpstream};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// State across restarts and data files that are not ours
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn keys_survive_a_restart() {
    let api = Api::start();
    let kept = api
        .generate(json!({
            "key_alias": "kept",
            "models": ["mock/*"],
            "metadata": {"owner": "search"},
            "max_budget": 9.5,
            "rpm_limit": 30,
            "duration": "2h",
        }))
        .await;
    let blocked = api.generate(json!({"key_alias": "blocked"})).await;
    let deleted = api.generate(json!({"key_alias": "deleted"})).await;
    let graced = api.generate(json!({"key_alias": "graced"})).await;
    let rotated = api.generate(json!({"key_alias": "rotated"})).await;
    let (kept_s, blocked_s, deleted_s, graced_old, rotated_old) = (
        secret_of(&kept),
        secret_of(&blocked),
        secret_of(&deleted),
        secret_of(&graced),
        secret_of(&rotated),
    );
    assert_eq!(
        api.post("/key/block", json!({"key": blocked_s})).await.0,
        200
    );
    assert_eq!(
        api.post("/key/delete", json!({"key_aliases": ["deleted"]}))
            .await
            .0,
        200
    );
    let (status, g) = api
        .post(
            "/key/regenerate",
            json!({"key": graced_old, "grace_period": "1h"}),
        )
        .await;
    assert_eq!(status, 200, "{g}");
    let graced_new = secret_of(&g);
    let (status, r) = api
        .post(&format!("/key/{rotated_old}/regenerate"), json!({}))
        .await;
    assert_eq!(status, 200, "{r}");
    let rotated_new = secret_of(&r);
    let (_, info_before) = api.get(&format!("/key/info?key={kept_s}")).await;
    let (_, list_before) = api.get("/key/list?return_full_object=true").await;

    let Api { gw, http } = api;
    let api = Api {
        gw: gw.restart(),
        http,
    };

    let (_, info_after) = api.get(&format!("/key/info?key={kept_s}")).await;
    assert_eq!(info_after, info_before, "a key changed across the restart");
    let (_, list_after) = api.get("/key/list?return_full_object=true").await;
    assert_eq!(list_after, list_before);
    assert_eq!(list_after["total_count"], 4);
    for (secret, want) in [
        (&kept_s, 200),
        (&blocked_s, 401),
        (&deleted_s, 401),
        (&graced_old, 200),
        (&graced_new, 200),
        (&rotated_old, 401),
        (&rotated_new, 200),
    ] {
        assert_eq!(api.use_key(secret).await, want, "after restart: {secret}");
    }
    // The alias index survived too: a taken alias is still taken, a deleted one is free.
    let (status, _) = api
        .post("/key/generate", json!({"key_alias": "kept"}))
        .await;
    assert_eq!(status, 409);
    api.generate(json!({"key_alias": "deleted"})).await;
    // The restarted process can still change what it loaded.
    assert_eq!(
        api.post("/key/unblock", json!({"key": blocked_s})).await.0,
        200
    );
    assert_eq!(api.use_key(&blocked_s).await, 200);
    api.assert_log_free_of(&[
        &kept_s,
        &blocked_s,
        &deleted_s,
        &graced_old,
        &graced_new,
        &rotated_old,
        &rotated_new,
    ]);
}

/// Starts on `data_dir` expecting a refusal; returns the log after checking the exit status.
fn refused_start(data_dir: &Path) -> String {
    let (status, log) = Options::new().data_dir(data_dir).start_expect_failure();
    assert!(!status.success(), "exit status {status}; log:\n{log}");
    log
}

#[test]
fn data_files_that_are_not_ours_are_refused_and_left_untouched() {
    // Garbage where the database should be.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.redb");
    let garbage: Vec<u8> = (0..16_384u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &garbage).unwrap();
    let log = refused_start(dir.path());
    assert!(log.contains("cannot open data file"), "{log}");
    assert!(log.contains(&file.display().to_string()), "{log}");
    assert!(
        std::fs::read(&file).unwrap() == garbage,
        "the garbage file was modified"
    );

    // A valid redb file that belongs to another program.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.redb");
    {
        let db = redb::Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("theirs");
            let mut t = txn.open_table(def).unwrap();
            t.insert("their-key", "their-value").unwrap();
        }
        txn.commit().unwrap();
    }
    let foreign = std::fs::read(&file).unwrap();
    let log = refused_start(dir.path());
    assert!(log.contains("is not a Portcullis data file"), "{log}");
    assert!(log.contains(&file.display().to_string()), "{log}");
    assert!(
        std::fs::read(&file).unwrap() == foreign,
        "the foreign data file was modified"
    );

    // Our format, written by a newer release.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.redb");
    {
        let db = redb::Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
            let mut t = txn.open_table(def).unwrap();
            t.insert("format", b"portcullis".as_slice()).unwrap();
            t.insert("schema_version", 99u32.to_le_bytes().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let future = std::fs::read(&file).unwrap();
    let log = refused_start(dir.path());
    assert!(log.contains("newer Portcullis"), "{log}");
    assert!(log.contains("schema 99"), "{log}");
    assert!(
        std::fs::read(&file).unwrap() == future,
        "the newer data file was modified"
    );

    // A data dir that is a file.
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("data");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let log = refused_start(&not_a_dir);
    assert!(log.contains("data directory"), "{log}");
    assert_eq!(std::fs::read(&not_a_dir).unwrap(), b"x");
}

#[tokio::test]
async fn one_process_per_data_dir_and_recovery_after_sigkill() {
    let api = Api::start();
    let k = api.generate(json!({"key_alias": "durable"})).await;
    let secret = secret_of(&k);

    // A second gateway on the same data dir is refused with a clear error; the first is unharmed.
    let (status, log) = Options::new()
        .data_dir(api.gw.data_path())
        .start_expect_failure();
    assert!(!status.success(), "{log}");
    assert!(log.contains("cannot open data file"), "{log}");
    assert_eq!(api.use_key(&secret).await, 200);

    // Killed without a chance to close the database: the next start repairs it and keeps the
    // committed keys.
    let Api { mut gw, http } = api;
    gw.signal("KILL");
    gw.wait_exit(Duration::from_secs(10))
        .expect("exit after SIGKILL");
    let _keep_dir = gw.dir.clone();
    let data = gw.data_path().to_path_buf();
    drop(gw);
    let api = Api {
        gw: Options::new().data_dir(&data).start(),
        http,
    };
    assert_eq!(api.use_key(&secret).await, 200);
    let (status, _) = api
        .post("/key/generate", json!({"key_alias": "durable"}))
        .await;
    assert_eq!(status, 409, "the alias index was lost in the crash");
    api.assert_log_free_of(&[&secret]);
}

// ---------------------------------------------------------------------------------------------
// Health, drain
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_probes_answer_without_credentials() {
    let gw = Options::new().start();
    let http = client();
    for path in ["/health/liveliness", "/health/liveness"] {
        let resp = http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.json::<Value>().await.unwrap(), json!("I'm alive!"));
    }
    let resp = http.get(gw.url("/health/readiness")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "healthy", "{body}");
    assert_eq!(body["db"], "connected", "{body}");
    assert_eq!(body["portcullis_version"], env!("CARGO_PKG_VERSION"));

    // Unknown routes and methods answer in the management envelope, not an empty body.
    let resp = http.get(gw.url("/no/such/route")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found_error", "{body}");
    let resp = http
        .delete(gw.url("/health/readiness"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);

    // SIGHUP without TLS and with the config unchanged changes nothing and does not stop it.
    gw.signal("HUP");
    let logged = harness::eventually(Duration::from_secs(5), || {
        gw.log().contains("SIGHUP: the config is unchanged")
    })
    .await;
    assert!(logged, "{}", gw.log());
    let resp = http.get(gw.url("/health/readiness")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

fn upstream_config(up: &FakeUpstream, shutdown_timeout_s: u32) -> String {
    format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: {}/v1\n      api_key: {DEFAULT_UPSTREAM_KEY}\ngeneral_settings:\n  graceful_shutdown_timeout: {shutdown_timeout_s}\n",
        up.base_url()
    )
}

/// Starts a streamed chat completion and returns the response once its first bytes arrived.
async fn open_stream(
    http: &reqwest::Client,
    url: String,
    text: &str,
) -> (reqwest::Response, String) {
    let mut resp = http
        .post(url)
        .bearer_auth(MASTER_KEY)
        .json(&json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().expect("a first chunk");
    (resp, String::from_utf8_lossy(&first).into_owned())
}

/// The text of every `choices[0].delta.content` in an SSE body.
fn streamed_content(sse: &str) -> String {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

async fn connection_refused(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn sigterm_drains_an_open_stream_then_exits_zero() {
    let up = FakeUpstream::start();
    // 13 content pieces at 100 ms: the stream is well under way, not done, when SIGTERM lands.
    up.set_chunk_delay(Duration::from_millis(100));
    let mut gw = Options::new().config(upstream_config(&up, 20)).start();
    let http = client();
    let words = "one two three four five six seven eight nine ten eleven";
    let (mut resp, mut sse) = open_stream(&http, gw.url("/v1/chat/completions"), words).await;

    gw.signal("TERM");
    // Shutdown has begun: no new connections, while the open stream carries on.
    assert!(
        connection_refused(gw.addr, Duration::from_secs(5)).await,
        "still accepting connections after SIGTERM"
    );
    while let Some(chunk) = resp.chunk().await.unwrap() {
        sse.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(sse.trim_end().ends_with("data: [DONE]"), "{sse}");
    assert_eq!(streamed_content(&sse), format!("Echo: {words}"));
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("exit after the drain");
    assert!(status.success(), "exit status {status}");
    assert_eq!(up.streams_completed(), 1);
    assert_eq!(up.streams_cancelled(), 0);
    let log = gw.log();
    assert!(log.contains("draining"), "{log}");
    assert!(log.contains("drained; exiting"), "{log}");
    assert!(!log.contains(MASTER_KEY));
}

#[tokio::test]
async fn drain_gives_up_after_the_shutdown_timeout() {
    let up = FakeUpstream::start();
    // A stream that would take minutes: the drain must not wait for it.
    up.set_chunk_delay(Duration::from_secs(30));
    let mut gw = Options::new().config(upstream_config(&up, 1)).start();
    let http = client();
    let (mut resp, _) = open_stream(&http, gw.url("/v1/chat/completions"), "slow stream").await;
    let sent = Instant::now();
    gw.signal("TERM");
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("exit after the drain timeout");
    let took = sent.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= Duration::from_millis(900),
        "exited before the drain timeout ({took:?})"
    );
    assert!(gw.log().contains("drain timeout reached"), "{}", gw.log());
    // The cut-off stream ends without [DONE].
    let mut rest = String::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!rest.contains("[DONE]"), "{rest}");
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// A test CA and a server certificate it signed for `localhost` and 127.0.0.1.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn issue(name: &str) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages
        .push(ExtendedKeyUsagePurpose::ServerAuth);
    let leaf_key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

/// Writes the server's files by replacing them whole, as certificate renewal tools do.
fn install(pki: &Pki, cert: &Path, key: &Path) {
    for (path, text) in [(cert, &pki.cert_pem), (key, &pki.key_pem)] {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}

/// A reqwest client that trusts only `ca_pem`.
fn tls_client(
    ca_pem: &str,
    tune: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    tune(reqwest::Client::builder().tls_certs_only([ca]))
        .build()
        .unwrap()
}

/// A raw rustls handshake limited to one protocol version, offering `alpn`.
async fn handshake(
    addr: SocketAddr,
    ca_pem: &str,
    version: &'static rustls::SupportedProtocolVersion,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// A gateway serving `pki`'s certificate from files in `dir`, named by flags or (`via_env`) by
/// PORTCULLIS_SSL_CERTFILE / PORTCULLIS_SSL_KEYFILE.
fn tls_gateway(dir: &Path, pki: &Pki, via_env: bool) -> harness::Gateway {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    install(pki, &cert, &key);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let opts = if via_env {
        Options::new()
            .env("PORTCULLIS_SSL_CERTFILE", cert)
            .env("PORTCULLIS_SSL_KEYFILE", key)
    } else {
        Options::new()
            .arg("--ssl-certfile")
            .arg(cert)
            .arg("--ssl-keyfile")
            .arg(key)
    };
    let gw = opts.start();
    assert!(gw.tls, "the ready file should say tls");
    assert!(gw.url("/").starts_with("https://"));
    gw
}

#[tokio::test]
async fn tls_serves_http2_and_http1_over_tls12_and_tls13() {
    let dir = tempfile::tempdir().unwrap();
    let pki = issue("first");
    let gw = tls_gateway(dir.path(), &pki, false);

    let h2 = tls_client(&pki.ca_pem, |b| b);
    let resp = h2.get(gw.url("/health/readiness")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.version(),
        reqwest::Version::HTTP_2,
        "ALPN should pick h2"
    );
    let h1 = tls_client(&pki.ca_pem, reqwest::ClientBuilder::http1_only);
    let resp = h1.get(gw.url("/health/readiness")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);

    // A full round trip (key generation, then a chat call with it) over each version.
    let tls12 = tls_client(&pki.ca_pem, |b| {
        b.tls_version_max(reqwest::tls::Version::TLS_1_2)
    });
    let tls13 = tls_client(&pki.ca_pem, |b| {
        b.tls_version_min(reqwest::tls::Version::TLS_1_3)
    });
    let mut secrets = Vec::new();
    for http in [&tls12, &tls13] {
        let resp = http
            .post(gw.url("/key/generate"))
            .bearer_auth(MASTER_KEY)
            .json(&json!({"models": ["mock/*"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let secret = secret_of(&resp.json::<Value>().await.unwrap());
        let resp = http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&json!({"model": "mock/tls", "messages": [{"role": "user", "content": "over tls"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        secrets.push(secret);
    }

    // What was negotiated, seen from a raw rustls client.
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let tls = handshake(gw.addr, &pki.ca_pem, version, &[b"h2", b"http/1.1"])
            .await
            .unwrap();
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.protocol_version(), Some(version.version));
        assert_eq!(conn.alpn_protocol(), Some(b"h2".as_slice()));
    }
    let mut tls = handshake(
        gw.addr,
        &pki.ca_pem,
        &rustls::version::TLS13,
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(b"http/1.1".as_slice())
    );
    tls.write_all(b"GET /health/liveness HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Plain HTTP on the TLS port is not served, and an untrusting client is refused.
    let plain = client()
        .get(format!("http://{}/health/liveness", gw.addr))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP was served on the TLS port"
    );
    let other = issue("other");
    let stranger = tls_client(&other.ca_pem, |b| b);
    assert!(
        stranger
            .get(gw.url("/health/liveness"))
            .send()
            .await
            .is_err(),
        "a client trusting another CA connected"
    );
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    Api::on(gw).assert_log_free_of(&secret_refs);
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = issue("first");
    let gw = tls_gateway(dir.path(), &first, true);

    // An HTTP/2 connection trusting only the first CA, kept open in the client's pool.
    let old = tls_client(&first.ca_pem, |b| b);
    let resp = old.get(gw.url("/health/readiness")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);

    let second = issue("second");
    install(&second, &cert, &key);
    gw.signal("HUP");
    // New connections trusting only the new CA succeed once the reload happened.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = tls_client(&second.ca_pem, |b| b);
        match fresh.get(gw.url("/health/readiness")).send().await {
            Ok(r) if r.status() == 200 => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "the new certificate was not served: {other:?}\n{}",
                    gw.log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(gw.log().contains("reloaded the TLS certificate"));
    // A new connection trusting only the first CA is now refused ...
    let fresh_old = tls_client(&first.ca_pem, |b| b);
    assert!(
        fresh_old
            .get(gw.url("/health/readiness"))
            .send()
            .await
            .is_err(),
        "the old certificate is still served to new connections"
    );
    // ... so the old client succeeding proves its connection from before the reload lives on.
    for _ in 0..3 {
        let resp = old.get(gw.url("/health/liveness")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }

    // A broken replacement is refused and the current certificate stays in service.
    std::fs::write(&cert, "not a certificate").unwrap();
    gw.signal("HUP");
    let failed = harness::eventually(Duration::from_secs(10), || {
        gw.log().contains("certificate reload failed")
    })
    .await;
    assert!(failed, "{}", gw.log());
    let fresh = tls_client(&second.ca_pem, |b| b);
    let resp = fresh.get(gw.url("/health/readiness")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn unreadable_certificate_files_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = issue("x");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    // A key that does not belong to the certificate.
    std::fs::write(&key, issue("y").key_pem).unwrap();
    let (status, log) = Options::new()
        .arg("--ssl-certfile")
        .arg(cert.display().to_string())
        .arg("--ssl-keyfile")
        .arg(key.display().to_string())
        .start_expect_failure();
    assert!(!status.success());
    assert!(log.contains(&key.display().to_string()), "{log}");

    let missing = dir.path().join("missing.pem");
    let (status, log) = Options::new()
        .arg("--ssl-certfile")
        .arg(missing.display().to_string())
        .arg("--ssl-keyfile")
        .arg(key.display().to_string())
        .start_expect_failure();
    assert!(!status.success());
    assert!(log.contains("cannot read certificate"), "{log}");
    assert!(log.contains(&missing.display().to_string()), "{log}");
}

// ---------------------------------------------------------------------------------------------
// CLI and environment
// ---------------------------------------------------------------------------------------------

fn run_cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(harness::binary())
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_config_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let good = write(
        "good.yaml",
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: sk-x\n      rpm: 100\n",
    );
    let (code, out) = run_cli(&["check-config", "--config", &good]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok (1 deployments)"), "{out}");

    // A type error is reported with its YAML path, and the status is 64.
    let bad = write(
        "bad.yaml",
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      rpm: lots\n",
    );
    let (code, out) = run_cli(&["check-config", "--config", &bad]);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("model_list[0].litellm_params.rpm"), "{out}");
    // Validation problems are all reported, each with its path.
    let invalid = write(
        "invalid.yaml",
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: ftp://nope\nrouter_settings:\n  routing_strategy: fastest\n",
    );
    let (code, out) = run_cli(&["check-config", "--config", &invalid]);
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("model_list[0].litellm_params.api_base"),
        "{out}"
    );
    assert!(out.contains("router_settings.routing_strategy"), "{out}");

    let (code, out) = run_cli(&["check-config", "--config", "/nonexistent/portcullis.yaml"]);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("/nonexistent/portcullis.yaml"), "{out}");
    let not_yaml = write("not.yaml", "model_list: [unclosed\n");
    let (code, _) = run_cli(&["check-config", "--config", &not_yaml]);
    assert_eq!(code, 64);

    // Unsupported keys warn with their path but do not fail.
    let extra = write(
        "extra.yaml",
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\ngeneral_settings:\n  not_a_setting: 1\n",
    );
    let (code, out) = run_cli(&["check-config", "--config", &extra]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("general_settings.not_a_setting"), "{out}");

    let (code, out) = run_cli(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("portcullis {}", env!("CARGO_PKG_VERSION"))
    );

    // `serve` refuses the same bad config, naming the path in its log.
    let (status, log) = Options::new()
        .config(std::fs::read_to_string(&bad).unwrap())
        .start_expect_failure();
    assert_eq!(
        status.code(),
        Some(64),
        "the same exit status as check-config"
    );
    assert!(log.contains("model_list[0].litellm_params.rpm"), "{log}");
}

#[tokio::test]
async fn environment_sets_data_dir_listen_address_and_master_key() {
    let litellm_key = "sk-litellm-style-master-987654321";
    let gw = Options::new()
        .no_master_key()
        .env("LITELLM_MASTER_KEY", litellm_key)
        .paths_via_env()
        .start();
    assert_ne!(gw.addr.port(), 4000, "PORTCULLIS_LISTEN was ignored");
    assert!(
        gw.data_path().join("portcullis.redb").exists(),
        "PORTCULLIS_DATA_DIR was ignored"
    );
    assert!(gw.data_path().join("config.yaml").exists());
    assert!(
        !gw.data_path().join("master.key").exists(),
        "a master key was generated although LITELLM_MASTER_KEY is set"
    );
    let api = Api::on(gw);
    let (status, k) = api.post_as(litellm_key, "/key/generate", json!({})).await;
    assert_eq!(status, 200, "{k}");
    let (status, _) = api.post("/key/generate", json!({})).await;
    assert_eq!(status, 401, "the harness master key must not work here");
    let log = api.gw.log();
    assert!(!log.contains(litellm_key), "the master key is in the log");
    assert!(!log.contains(&secret_of(&k)));

    // PORTCULLIS_MASTER_KEY wins over LITELLM_MASTER_KEY.
    let api = Api::on(
        Options::new()
            .env("LITELLM_MASTER_KEY", litellm_key)
            .start(),
    );
    assert_eq!(api.post("/key/generate", json!({})).await.0, 200);
    assert_eq!(
        api.post_as(litellm_key, "/key/generate", json!({})).await.0,
        401
    );

    // And the config may name its own through os.environ/.
    let own = "sk-from-config-env-0000000001";
    let api = Api::on(
        Options::new()
            .no_master_key()
            .env("MY_MASTER", own)
            .config("model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\ngeneral_settings:\n  master_key: os.environ/MY_MASTER\n")
            .start(),
    );
    let (status, k) = api.post_as(own, "/key/generate", json!({})).await;
    assert_eq!(status, 200, "{k}");
    assert_eq!(api.use_key(&secret_of(&k)).await, 200);
    assert!(!api.gw.log().contains(own));
    assert_eq!(
        api.get_as(
            own,
            &format!("/key/info?key={}", sha256_hex(&secret_of(&k)))
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn a_damaged_data_file_is_refused_cleanly_and_left_as_it_is() {
    let api = Api::start();
    let pad = "x".repeat(2000);
    for _ in 0..200 {
        api.generate(json!({"metadata": {"pad": pad}})).await;
    }
    let data_dir = api.gw.data_path().to_path_buf();
    let mut gw = api.gw;
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(30)).unwrap().success());
    let file = data_dir.join("portcullis.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    // Scribble over the middle half of the file: key pages live there.
    let (from, to) = (bytes.len() / 4, bytes.len() * 3 / 4);
    for (i, b) in bytes[from..to].iter_mut().enumerate() {
        *b = (i * 131 % 251) as u8;
    }
    std::fs::write(&file, &bytes).unwrap();
    let (status, log) = Options::new().data_dir(&data_dir).start_expect_failure();
    assert_eq!(
        status.code(),
        Some(1),
        "a clean refusal, not a crash; log:\n{log}"
    );
    assert!(log.contains("is damaged"), "{log}");
    assert!(
        std::fs::read(&file).unwrap() == bytes,
        "the damaged file was modified"
    );
}

#[tokio::test]
async fn sighup_reloads_routing_and_names_what_needs_a_restart() {
    let first = "model_list:\n  - model_name: one\n    litellm_params:\n      model: mock/one\n";
    let gw = Options::new().config(first).start();
    let http = harness::client();
    let config = gw.dir.path().join("config.yaml");
    let chat = |model: &'static str| {
        let (http, url) = (http.clone(), gw.url("/v1/chat/completions"));
        async move {
            http.post(url)
                .bearer_auth(harness::MASTER_KEY)
                .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(chat("one").await, 200);
    assert_eq!(chat("two").await, 404);

    // A new model and a changed limit that only a restart applies.
    std::fs::write(
        &config,
        format!("{first}  - model_name: two\n    litellm_params:\n      model: mock/two\ngeneral_settings:\n  idle_timeout: 45\n"),
    )
    .unwrap();
    gw.signal("HUP");
    assert!(
        harness::eventually(Duration::from_secs(5), || gw
            .log()
            .contains("SIGHUP: config reloaded"))
        .await,
        "{}",
        gw.log()
    );
    assert!(
        gw.log().contains("general_settings.idle_timeout"),
        "{}",
        gw.log()
    );
    assert_eq!(chat("two").await, 200);
    assert_eq!(chat("one").await, 200);
    // The reload is in the audit log, as the system's change of the config, before and after;
    // it is written after the log line and read through the search index, so poll for it.
    let read_audit = || async {
        http.get(gw.url("/audit?table_name=config"))
            .bearer_auth(harness::MASTER_KEY)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    assert!(
        harness::eventually_async(Duration::from_secs(10), || async {
            read_audit().await["audit_logs"][0].is_object()
        })
        .await,
        "no audit entry for the reload"
    );
    let audit = read_audit().await;
    let entry = &audit["audit_logs"][0];
    assert_eq!(entry["changed_by"], "system", "{audit}");
    assert_eq!(
        entry["before_value"]["model_list"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        entry["updated_values"]["model_list"][1]["model_name"],
        "two"
    );

    // A config that no longer validates is refused whole; routing stays as it was.
    std::fs::write(&config, "model_list: 7\n").unwrap();
    gw.signal("HUP");
    assert!(
        harness::eventually(Duration::from_secs(5), || gw
            .log()
            .contains("does not validate"))
        .await,
        "{}",
        gw.log()
    );
    assert_eq!(chat("two").await, 200);
}
