//! Router, listener (plain TCP or rustls), graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;
use crate::state::{AppState, Built, StartError};

async fn host(State(st): State<Arc<AppState>>, req: Request) -> Response {
    st.repos
        .hosting
        .serve(req.method(), req.uri().path(), req.headers())
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if !st.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match st.storage.ping().await {
        Ok(()) => (StatusCode::OK, format!("ok ({})\n", st.storage.backend())).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable\n").into_response()
        }
    }
}

/// The whole HTTP surface: each slice's routes over its own state.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/repos/{*path}", get(host))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::metrics_handler))
        // token, whoami, credentials, audit: JSON bodies of at most 1 MiB
        .merge(crate::auth::router().layer(DefaultBodyLimit::max(1 << 20)))
        .merge(crate::repos::router(state.repos.clone()))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .merge(crate::tlog::router(state.log.clone()))
        .merge(crate::director::router(state.director.clone()))
        .merge(crate::inventory::router(state.repos.clone()))
        .merge(crate::yanks::router(Arc::new(crate::yanks::Yanks {
            repos: state.repos.clone(),
            director: state.director.clone(),
        })))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// A started server.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// `https` when TLS is on.
    pub scheme: &'static str,
    /// Shown once, on the first start of a fresh data directory.
    pub bootstrap_credential: Option<String>,
    /// The server's internals (`testing` lends parts of them to tests).
    pub(crate) state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Where state is kept: `sqlite` or `postgresql`.
    pub fn storage_backend(&self) -> &'static str {
        self.state.storage.backend()
    }

    /// Stops accepting, lets in-flight requests finish, then returns.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.state.ready.store(false, Ordering::Relaxed);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let served = match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        // Commit what is queued and release the log directory's lock, even
        // though background tasks may still hold the state: a restart in
        // this process (or the next `custody serve`) can open it at once.
        let log = self.state.log.writer().clone();
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
        served
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        signal.await;
        tracing::info!("shutdown requested; finishing in-flight requests");
        self.shutdown().await
    }
}

/// Builds the state and starts serving on `config.listen` (port 0 picks a
/// free port; see [`RunningServer::addr`]).
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    let listen = config.listen;
    let header_timeout = Duration::from_secs(config.header_read_timeout_seconds);
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let Built {
        state,
        bootstrap_credential,
    } = AppState::build(config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Io {
            path: listen.to_string().into(),
            op: "bind",
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Io {
        path: listen.to_string().into(),
        op: "local address",
        source,
    })?;
    let app = router(state.clone());
    spawn_housekeeping(state.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let stop = async move {
        let _ = rx.await;
    };
    let scheme;
    let task = match tls {
        None => {
            scheme = "http";
            // Responses go out as header + body writes; without TCP_NODELAY
            // Nagle holds the body until the client's delayed ACK (up to
            // 40 ms on Linux) for every small metadata response.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set");
                }
            });
            tokio::spawn(serve_connections(listener, app, header_timeout, stop))
        }
        Some(acceptor) => {
            scheme = "https";
            let tls_listener = TlsListener::spawn(listener, acceptor, addr);
            tokio::spawn(serve_connections(tls_listener, app, header_timeout, stop))
        }
    };
    Ok(RunningServer {
        addr,
        scheme,
        bootstrap_credential,
        state,
        shutdown: Some(tx),
        task,
    })
}

/// On shutdown, in-flight requests get this long to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Accept loop: HTTP/1.1 with keep-alive and a header-read timeout; on
/// `stop`, stop accepting, close idle connections, let in-flight requests
/// finish (bounded by [`SHUTDOWN_GRACE`]).
async fn serve_connections<L>(
    mut listener: L,
    app: Router,
    header_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            (io, peer) = listener.accept() => {
                // The connection's peer address, for per-client rate limits
                // (never taken from a forwarding header: that is the
                // client's word).
                let app = tower::ServiceExt::map_request(
                    app.clone(),
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(crate::auth::PeerAddr(peer));
                        req
                    },
                );
                let service = hyper_util::service::TowerToHyperService::new(app);
                let conn = builder.serve_connection(TokioIo::new(io), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "some requests were still running {} s after shutdown began",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    Ok(())
}

/// Hourly: the auth slice's upkeep (expired token revocations, idle
/// rate-limit buckets); every 10 minutes: timestamp renewal (see
/// [`renew_timestamps`]). Runs until the runtime stops.
fn spawn_housekeeping(state: Arc<AppState>) {
    tokio::spawn(renew_timestamps(state.clone()));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            state.auth.housekeeping().await;
        }
    });
}

/// How often the timestamp renewal runs, and how close to expiry a hosted
/// timestamp may get before it is re-signed (default lifetime: 1 day).
const TIMESTAMP_CHECK: Duration = Duration::from_secs(600);
const TIMESTAMP_RENEW_WITHIN_HOURS: i64 = 6;

/// Every 10 minutes: re-sign (online key) and republish the timestamp of
/// every repository whose timestamp expires within 6 hours, so clients
/// never see an expired timestamp while the server runs. Repositories
/// waiting for offline signatures are skipped (renewing would publish the
/// draft). Failures are logged and retried on the next tick.
async fn renew_timestamps(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(TIMESTAMP_CHECK);
    loop {
        tick.tick().await;
        for repo in state.repos.authoring.repos() {
            let guard = state.repos.authoring.lock.lock().await;
            let st = state.repos.clone();
            let r = repo.clone();
            let result = tokio::task::spawn_blocking(move || {
                st.authoring.renew_timestamp(
                    &r,
                    chrono::Duration::hours(TIMESTAMP_RENEW_WITHIN_HOURS),
                    &st.hosting,
                    chrono::Utc::now(),
                )
            })
            .await;
            drop(guard);
            match result {
                Ok(Ok(Some(v))) => {
                    tracing::info!(repo, timestamp_version = v, "timestamp renewed");
                    let _ = state
                        .auth
                        .audit_as(
                            "server",
                            &[],
                            "timestamp.renew",
                            Some(&repo),
                            None,
                            "ok",
                            &format!("timestamp v{v}"),
                        )
                        .await;
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(repo, error = %e, "timestamp renewal failed"),
                Err(e) => tracing::warn!(repo, error = %e, "timestamp renewal task failed"),
            }
        }
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StartError::Tls(format!("certificate file {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!(
            "certificate file {} contains no CERTIFICATE block",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| StartError::Tls(format!("private key file {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| StartError::Tls(format!("certificate/key pair: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// TLS handshakes run in their own tasks (with a time limit) so a slow or
/// silent client cannot stall the accept loop; finished connections are
/// handed to axum through a channel.
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    fn spawn(listener: TcpListener, acceptor: TlsAcceptor, addr: SocketAddr) -> TlsListener {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    break;
                }
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set");
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { rx, addr }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop never ends while we hold the receiver; if it
            // somehow did, stop accepting instead of spinning.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// For binaries without their own async runtime: builds one, starts the
/// server, calls `on_start` (e.g. to print the URL and the bootstrap
/// credential), then serves until SIGTERM/SIGINT and shuts down gracefully.
pub fn run_blocking(
    config: ServerConfig,
    on_start: impl FnOnce(&RunningServer) -> std::io::Result<()>,
) -> Result<(), StartError> {
    let io = |op: &'static str| {
        move |source| StartError::Io {
            path: "custody serve".into(),
            op,
            source,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("start async runtime"))?;
    runtime.block_on(async move {
        let server = start(config).await?;
        on_start(&server).map_err(io("report start"))?;
        server
            .run_until(shutdown_signal())
            .await
            .map_err(io("serve"))
    })
}
