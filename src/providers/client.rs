//! The pooled upstream HTTP client (HTTP/1.1 and HTTP/2 over rustls with the ring provider)
//! and the two primitives every provider uses: send with a deadline, read a body with a cap.

use super::{UpstreamError, parse_retry_after};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Upstream error bodies are kept to pass through; a runaway one is cut here.
const MAX_ERROR_BODY: usize = 1 << 20;
/// Non-streaming upstream answers larger than this are refused rather than buffered.
const MAX_REPLY_BODY: usize = 64 << 20;

pub fn http_client(extra_roots_pem: Option<&[u8]>) -> Result<HttpClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_roots_pem {
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("bad CA certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("bad CA certificate: {e}"))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(512)
        .build(https))
}

/// Sends a request; a non-2xx answer becomes [`UpstreamError::Status`] with its body.
pub async fn send(
    client: &HttpClient,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<http::Response<Incoming>, UpstreamError> {
    let resp = match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => return Err(UpstreamError::Timeout),
        Ok(Err(e)) => return Err(UpstreamError::Connect(error_chain(&e))),
        Ok(Ok(r)) => r,
    };
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let retry_after = parse_retry_after(resp.headers());
    let body = read_body(resp.into_body(), MAX_ERROR_BODY, timeout)
        .await
        .unwrap_or_default();
    Err(UpstreamError::Status {
        status,
        body,
        retry_after,
    })
}

pub async fn read_reply(body: Incoming, timeout: Duration) -> Result<Bytes, UpstreamError> {
    read_body(body, MAX_REPLY_BODY, timeout).await
}

async fn read_body(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, UpstreamError> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(UpstreamError::Timeout),
        Ok(Err(e)) => Err(UpstreamError::Protocol(format!(
            "reading the upstream body: {e}"
        ))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// hyper's errors say little at the top level; the cause chain says what happened.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
