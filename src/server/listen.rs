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

/// What every worker shares.
struct Shared {
    app: axum::Router,
    builder: Builder,
    slots: Arc<Semaphore>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    idle_timeout: Duration,
    extra_roots: Option<Vec<u8>>,
}

/// A listening socket on `addr` that other workers can bind too (SO_REUSEPORT: the kernel
/// spreads new connections over them).
fn bind_shared(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// Serves until SIGTERM/SIGINT, then drains.
///
/// One single-threaded runtime per CPU, each with its own listening socket and its own
/// upstream connection pool: a request is accepted, routed and proxied on one thread, so no
/// cross-thread wake-ups are paid per request (on two cores they were a fifth of the CPU).
pub async fn serve(
    state: AppState,
    opts: &ServeOptions,
    tls: Option<TlsFiles>,
    drain_timeout: Duration,
    idle_timeout: Duration,
    extra_roots: Option<Vec<u8>>,
    reload: Box<dyn Fn(&AppState) + Send + Sync>,
) -> Result<(), ServerError> {
    let certs = match &tls {
        Some(files) => Some(CertStore::open(&files.cert, &files.key)?),
        None => None,
    };
    let acceptor = match &certs {
        Some(c) => Some(tokio_rustls::TlsAcceptor::from(server_config(c.clone())?)),
        None => None,
    };
    let bind_err = |e: std::io::Error| ServerError::Bind(opts.listen, e.to_string());
    // SO_REUSEPORT would let a second server of the same user share a port that is already in
    // use and silently take half its connections: an exclusive bind first proves it is free.
    if opts.listen.port() != 0 {
        drop(std::net::TcpListener::bind(opts.listen).map_err(bind_err)?);
    }
    let first = bind_shared(opts.listen).map_err(bind_err)?;
    let addr = first
        .local_addr()
        .map_err(|e| ServerError::Io(e.to_string()))?;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 64);
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(bind_shared(addr).map_err(bind_err)?);
    }

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(idle_timeout);
    builder.http2().timer(hyper_util::rt::TokioTimer::new());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let shared = Arc::new(Shared {
        app: super::build_app(state.clone()),
        builder,
        slots: slots.clone(),
        acceptor,
        idle_timeout,
        extra_roots,
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (exit_tx, exit_rx) = watch::channel(false);
    let mut threads = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let shared = shared.clone();
        let shutdown = shutdown_rx.clone();
        let mut exit = exit_rx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("portcullis-{i}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a worker runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    accept_loop(listener, shared, shutdown).await;
                    // Keep this runtime (and the connections it drives) alive until the drain
                    // is over.
                    let _ = exit.wait_for(|done| *done).await;
                });
            })
            .map_err(|e| ServerError::Io(e.to_string()))?;
        threads.push(thread);
    }

    let mut term = signal(SignalKind::terminate()).map_err(|e| ServerError::Io(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| ServerError::Io(e.to_string()))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| ServerError::Io(e.to_string()))?;

    state.set_phase(Phase::Ready);
    if let Some(path) = &opts.ready_file {
        write_ready_file(path, addr, shared.acceptor.is_some())?;
    }
    tracing::info!(%addr, tls = shared.acceptor.is_some(), workers, "listening");
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
    loop {
        tokio::select! {
            _ = hup.recv() => {
                systemd.notify("RELOADING=1");
                if let Some(c) = &certs {
                    match c.reload() {
                        Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate"),
                        Err(e) => tracing::error!(error = %e, "SIGHUP: certificate reload failed; keeping the old one"),
                    }
                }
                reload(&state);
                systemd.notify("READY=1");
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    state.set_phase(Phase::Draining);
    systemd.notify("STOPPING=1");
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
    let _ = exit_tx.send(true);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// One worker: accepts on its own socket and serves each connection on its own thread.
async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot use the listening socket");
            return;
        }
    };
    // This thread's own upstream pool: its connections are driven by this runtime.
    let client = match crate::providers::http_client(shared.extra_roots.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the upstream client");
            return;
        }
    };
    let mut accept_errors = AcceptErrors::default();
    loop {
        let slot = tokio::select! {
            slot = shared.slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
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
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let io = IdleIo::new(stream, activity.clone());
        let app = shared.app.clone();
        let client = client.clone();
        let conn_activity = activity.clone();
        let service =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                req.extensions_mut().insert(client.clone());
                let guard = conn_activity.begin();
                let call = app.clone().oneshot(req.map(axum::body::Body::new));
                async move {
                    let resp = call.await?;
                    Ok::<_, std::convert::Infallible>(resp.map(|b| GuardedBody::new(b, guard)))
                }
            });
        let shared = shared.clone();
        let conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let idle = shared.idle_timeout;
            match &shared.acceptor {
                None => {
                    drive(
                        &shared.builder,
                        TokioIo::new(io),
                        service,
                        activity,
                        conn_shutdown,
                        idle,
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
                        &shared.builder,
                        TokioIo::new(tls),
                        service,
                        activity,
                        conn_shutdown,
                        idle,
                        peer,
                    )
                    .await
                }
            }
        });
    }
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
