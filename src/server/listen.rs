//! The accept loop: plain TCP or rustls, each connection served by hyper's auto builder
//! (HTTP/1.1 or HTTP/2). Connections are capped in number, closed when idle, and drained on
//! SIGTERM; SIGHUP reloads the certificate.

use super::conn::{Activity, GuardedBody, IdleIo};
use super::notify::Notifier;
use super::{ServeOptions, ServerError};
use crate::api::PeerAddr;
use crate::app::{AppState, Phase};
use crate::config::TlsFiles;
use crate::tls::{CertStore, server_config};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, watch};
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

/// Connections at once; beyond this, accepting waits (the kernel queues) until one closes.
const MAX_CONNECTIONS: usize = 16_384;
/// How long a closing connection gets to finish its goodbye before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

type Builder = auto::Builder<TokioExecutor>;

pub async fn serve(
    state: AppState,
    opts: &ServeOptions,
    tls: Option<TlsFiles>,
    drain_timeout: Duration,
    idle_timeout: Duration,
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
        .header_read_timeout(idle_timeout);
    builder.http2().timer(hyper_util::rt::TokioTimer::new());
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

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
    let reload = || {
        systemd.notify("RELOADING=1");
        match &certs {
            Some(c) => match c.reload() {
                Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: certificate reload failed; keeping the old one")
                }
            },
            None => {
                tracing::info!("SIGHUP: nothing to reload (no TLS); config changes need a restart")
            }
        }
        systemd.notify("READY=1");
    };
    let mut accept_errors = AcceptErrors::default();

    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = hup.recv() => { reload(); continue; }
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    accept_errors.note(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = hup.recv() => { reload(); continue; }
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let io = IdleIo::new(stream, activity.clone());
        let app = app.clone();
        let conn_activity = activity.clone();
        let service =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                let guard = conn_activity.begin();
                let call = app.clone().oneshot(req.map(axum::body::Body::new));
                async move {
                    let resp = call.await?;
                    Ok::<_, std::convert::Infallible>(resp.map(|b| GuardedBody::new(b, guard)))
                }
            });
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => {
                    drive(
                        &builder,
                        TokioIo::new(io),
                        service,
                        activity,
                        shutdown,
                        idle_timeout,
                        peer,
                    )
                    .await
                }
                Some(acceptor) => {
                    let tls =
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(io))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    drive(
                        &builder,
                        TokioIo::new(tls),
                        service,
                        activity,
                        shutdown,
                        idle_timeout,
                        peer,
                    )
                    .await
                }
            }
        });
    }

    state.set_phase(Phase::Draining);
    systemd.notify("STOPPING=1");
    drop(listener);
    let _ = shutdown_tx.send(true);
    tracing::info!(
        timeout_s = drain_timeout.as_secs_f64(),
        "draining: finishing in-flight requests"
    );
    // Every connection holds a slot: having them all back means every connection is closed.
    match tokio::time::timeout(drain_timeout, slots.acquire_many(MAX_CONNECTIONS as u32)).await {
        Ok(_) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!("drain timeout reached; exiting with requests still open"),
    }
    // The watchdog keeps pinging through the drain, so a long drain is not mistaken for a hang.
    if let Some(w) = watchdog {
        w.abort();
    }
    Ok(())
}

/// Serves one connection until it ends, it idles out, or the server drains.
async fn drive<I, S, B>(
    builder: &Builder,
    io: TokioIo<I>,
    service: S,
    activity: Arc<Activity>,
    mut shutdown: watch::Receiver<bool>,
    idle_timeout: Duration,
    peer: std::net::SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut closing_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.changed(), if closing_since.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing_since = Some(tokio::time::Instant::now());
            }
            _ = tick.tick() => match closing_since {
                None if activity.in_flight() == 0 && activity.idle_ms() >= idle_timeout.as_millis() as u64 => {
                    conn.as_mut().graceful_shutdown();
                    closing_since = Some(tokio::time::Instant::now());
                }
                // Draining waits for requests in flight; an idle close does not wait for a
                // peer that ignores the goodbye.
                Some(since) if activity.in_flight() == 0 && since.elapsed() >= CLOSE_GRACE => return,
                _ => {}
            },
        }
    }
}

/// Accept failures (out of file descriptors, typically) come in bursts; one line a second says it.
#[derive(Default)]
struct AcceptErrors {
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    fn note(&mut self, e: &std::io::Error) {
        match self.last {
            Some(t) if t.elapsed() < Duration::from_secs(1) => self.suppressed += 1,
            _ => {
                tracing::warn!(error = %e, suppressed = self.suppressed, "accept failed");
                self.last = Some(std::time::Instant::now());
                self.suppressed = 0;
            }
        }
    }
}
