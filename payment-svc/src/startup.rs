//! Building and running the HTTP application. Tests build it on port 0 and talk HTTP to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;

use crate::auth::{JwtSecret, TokenVerifier};
use crate::error::ApiError;
use crate::extract::MAX_BODY_BYTES;
use crate::routes::{concerts, health, payments, points, reservations};
use crate::state::AppState;

/// Everything `serve` needs besides the database address.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub jwt_secret: JwtSecret,
    /// How long a hold lasts before the seat is free again.
    pub hold_ttl: Duration,
    /// Longest a statement waits for a row lock. Bounds how long a duplicate request waits for
    /// the first one holding its Idempotency-Key before it gets 409 IDEMPOTENCY_KEY_IN_USE.
    pub lock_timeout: Duration,
    pub max_connections: u32,
}

/// How much one client may take. Kept apart from [`Settings`], with defaults, so code that
/// builds the application from explicit settings keeps compiling as limits are added.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Live (held, unexpired) holds one user may have at once (`MAX_HOLDS_PER_USER`).
    pub max_holds_per_user: u32,
    /// Longest one SQL statement may run (`STATEMENT_TIMEOUT_MS`): no request, however odd,
    /// keeps a connection busy longer; it gets 503 `UNAVAILABLE` instead.
    pub statement_timeout: Duration,
    /// Longest a client may take to send its request body, counted from its headers
    /// (`REQUEST_TIMEOUT_MS`): a client that sends slowly gets 408 `REQUEST_TIMEOUT` instead of
    /// holding a connection open. A statement once sent is always answered with its outcome
    /// (crate::deadline says why); acquire and statement timeouts bound that part.
    pub request_timeout: Duration,
}

impl Limits {
    pub const DEFAULT_MAX_HOLDS_PER_USER: u32 = 4;
    /// Above the default lock timeout (5 s), so a lock wait ends as a lock timeout.
    pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 10_000;
    /// Generous: a slow client on a slow network still gets its body in.
    pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_holds_per_user: Self::DEFAULT_MAX_HOLDS_PER_USER,
            statement_timeout: Duration::from_millis(Self::DEFAULT_STATEMENT_TIMEOUT_MS),
            request_timeout: Duration::from_millis(Self::DEFAULT_REQUEST_TIMEOUT_MS),
        }
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    /// [`Application::build_with_limits`] with the default limits.
    pub async fn build(settings: Settings, database: PgConnectOptions) -> anyhow::Result<Self> {
        Self::build_with_limits(settings, Limits::default(), database).await
    }

    /// Binds the listener and prepares the router. The pool connects lazily, so the service
    /// starts while Postgres is down and reports it through `/readyz` and 503s.
    pub async fn build_with_limits(
        settings: Settings,
        limits: Limits,
        database: PgConnectOptions,
    ) -> anyhow::Result<Self> {
        // default_transaction_isolation pins statements outside db::begin too (a release's
        // single UPDATE): under a server default of REPEATABLE READ, one that waited on a
        // payment's row lock would fail with a serialization error instead of seeing its commit.
        let database = database.application_name("payment-svc").options([
            // Backslash-escaped: the startup options string splits on spaces.
            (
                "default_transaction_isolation",
                r"read\ committed".to_owned(),
            ),
            (
                "lock_timeout",
                format!("{}ms", settings.lock_timeout.as_millis()),
            ),
            (
                "statement_timeout",
                format!("{}ms", limits.statement_timeout.as_millis()),
            ),
        ]);
        let pool = shared::db::pool_options(settings.max_connections).connect_lazy_with(database);
        let state = AppState {
            pool,
            tokens: Arc::new(TokenVerifier::new(&settings.jwt_secret)),
            hold_ttl_seconds: settings.hold_ttl.as_secs_f64(),
            max_holds_per_user: limits.max_holds_per_user,
            metrics: shared::metrics::prometheus_handle(),
        };
        let listener = TcpListener::bind(settings.http_addr).await?;
        Ok(Self {
            listener,
            router: router(state, limits.request_timeout),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or(0)
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        tracing::info!(addr = ?self.listener.local_addr()?, "payment-svc listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }
}

fn router(state: AppState, request_timeout: Duration) -> Router {
    let routes = Router::new()
        .merge(health::router())
        .route("/openapi.json", get(crate::openapi::document))
        .merge(concerts::router())
        .merge(points::router())
        .merge(reservations::router())
        .merge(payments::router())
        .fallback(|| async { ApiError::NotFound("route") })
        // 405 with `Allow` (axum adds the header to the fallback's answer), as RFC 9110 says.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // The deadline bounds receiving the request only: see crate::deadline for why.
        .layer(axum::middleware::from_fn_with_state(
            request_timeout,
            crate::deadline::start,
        ))
        .layer(axum::middleware::from_fn(shared::metrics::record_request));
    // gzip for clients that accept it: a page of 1,000 seats shrinks about twentyfold.
    shared::http::with_request_log(routes)
        .layer(CompressionLayer::new())
        .with_state(state)
}
