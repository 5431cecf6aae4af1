//! The accept loop: plain TCP or rustls, each connection served by hyper's auto builder
//! (HTTP/1.1 or HTTP/2), all watched so SIGTERM can drain them; SIGHUP reloads the certificate.

use super::notify::Notifier;
use super::{ServeOptions, ServerError};
use crate::api::PeerAddr;
use crate::app::{AppState, Phase};
use crate::config::TlsFiles;
use crate::tls::{CertStore, server_config};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tower::ServiceExt;

fn write_ready_file(
    path: &std::path::Path,
    addr: std::net::SocketAddr,
    tls: bool,
) -> Result<(), ServerError> {
    let body = serde_json::json!({"addr": addr.to_string(), "pid": std::process::id(), "tls": tls});
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body.to_string())
        .map_err(|e| ServerError::Io(format!("ready file: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| ServerError::Io(format!("ready file: {e}")))
}

pub async fn serve(
    state: AppState,
    opts: &ServeOptions,
    tls: Option<TlsFiles>,
    drain_timeout: Duration,
) -> Result<(), ServerError> {
    let certs = match &tls {
        Some(files) => Some(CertStore::open(&files.cert, &files.key)?),
        None => None,
    };
    let acceptor = match &certs {
        Some(c) => Some(tokio_rustls::TlsAcceptor::from(server_config(c.clone())?)),
        None => None,
    };
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|e| ServerError::Bind(opts.listen, e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Io(e.to_string()))?;
    let app = super::build_app(state.clone());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder.http2().timer(hyper_util::rt::TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();

    let mut term = signal(SignalKind::terminate()).map_err(|e| ServerError::Io(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| ServerError::Io(e.to_string()))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| ServerError::Io(e.to_string()))?;

    state.set_phase(Phase::Ready);
    if let Some(path) = &opts.ready_file {
        write_ready_file(path, addr, acceptor.is_some())?;
    }
    let systemd = Notifier::from_env(&opts.env);
    systemd.notify("READY=1");
    let watchdog = systemd.watchdog_every().map(|every| {
        let systemd = systemd.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                systemd.notify("WATCHDOG=1");
            }
        })
    });
    tracing::info!(%addr, tls = acceptor.is_some(), "listening");

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(PeerAddr(peer));
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
                let watcher = graceful.watcher();
                let builder = builder.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let result = match acceptor {
                        None => {
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Some(acceptor) => {
                            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => return,
                            };
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                            watcher.watch(conn.into_owned()).await
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = hup.recv() => {
                systemd.notify("RELOADING=1");
                match &certs {
                    Some(c) => match c.reload() {
                        Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate"),
                        Err(e) => tracing::error!(error = %e, "SIGHUP: certificate reload failed; keeping the old one"),
                    },
                    None => tracing::info!("SIGHUP: nothing to reload (no TLS); config changes need a restart"),
                }
                systemd.notify("READY=1");
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    state.set_phase(Phase::Draining);
    systemd.notify("STOPPING=1");
    drop(listener);
    tracing::info!(
        timeout_s = drain_timeout.as_secs_f64(),
        "draining: finishing in-flight requests"
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("drained; exiting"),
        _ = tokio::time::sleep(drain_timeout) => tracing::warn!("drain timeout reached; exiting with requests still open"),
    }
    // The watchdog keeps pinging through the drain, so a long drain is not mistaken for a hang.
    if let Some(w) = watchdog {
        w.abort();
    }
    Ok(())
}
