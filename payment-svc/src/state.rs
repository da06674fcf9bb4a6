//! What the handlers share. Extractors take only the part they need through axum's `FromRef`
//! (the auth extractors the token verifier), so nothing but the router depends on the whole.

use std::sync::Arc;

use axum::extract::FromRef;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;

use crate::auth::TokenVerifier;

#[derive(Clone, FromRef)]
pub struct AppState {
    /// Postgres, where every piece of booking state lives.
    pub pool: PgPool,
    /// Checks bearer tokens against `JWT_SECRET`.
    pub tokens: Arc<TokenVerifier>,
    /// How long a hold lasts, in whole seconds, as Postgres `make_interval` takes them.
    #[from_ref(skip)]
    pub hold_ttl_seconds: f64,
    /// Live holds one user may have at once (`MAX_HOLDS_PER_USER`).
    #[from_ref(skip)]
    pub max_holds_per_user: u32,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}
