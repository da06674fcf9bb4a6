//! Building and running the HTTP application. Tests build it on port 0 and talk HTTP to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{JwtSecret, TokenVerifier};
use crate::error::ApiError;
use crate::extract::MAX_BODY_BYTES;
use crate::observability;
use crate::routes::{concerts, health, payments, points, reservations};

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
}

impl Limits {
    pub const DEFAULT_MAX_HOLDS_PER_USER: u32 = 4;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_holds_per_user: Self::DEFAULT_MAX_HOLDS_PER_USER,
        }
    }
}

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub tokens: Arc<TokenVerifier>,
    /// Whole seconds, as Postgres `make_interval` takes them.
    pub hold_ttl_seconds: f64,
    pub max_holds_per_user: u32,
    pub metrics: PrometheusHandle,
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
        let database = database.application_name("payment-svc").options([(
            "lock_timeout",
            format!("{}ms", settings.lock_timeout.as_millis()),
        )]);
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
            router: router(state),
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

fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/admin/concerts", post(concerts::create))
        .route("/concerts", get(concerts::list))
        .route("/concerts/{concert_id}", get(concerts::show))
        .route("/schedules/{schedule_id}/seats", get(concerts::seats))
        .route("/points", get(points::balance))
        .route("/points/charge", post(points::charge))
        .route(
            "/reservations",
            post(reservations::hold).get(reservations::list),
        )
        .route(
            "/reservations/{reservation_id}",
            get(reservations::show).delete(reservations::release),
        )
        .route("/payments", post(payments::pay))
        .route("/payments/{payment_id}", get(payments::show))
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::malformed("this method is not allowed on this path")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(shared::metrics::record_request));
    observability::with_request_log(routes).with_state(state)
}
