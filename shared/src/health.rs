//! Liveness and readiness as both services answer them. `/healthz` is 200 `{"status":"ok"}`
//! while the process runs. `/readyz` asks each dependency the service needs, each within
//! [`READY_CHECK_TIMEOUT`], and is 200 `{"status":"ready",...}` when all answer, else 503
//! `{"status":"unavailable",...}` naming those that did not (`"postgres":"unreachable"`).
//!
//! Each service keeps its own handlers, which carry its OpenAPI description, and calls these.

use std::future::Future;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::PgPool;

/// Readiness must answer promptly even when a dependency hangs: an orchestrator's own timeout
/// is a few seconds.
pub const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The `/healthz` body.
#[derive(Debug, Serialize)]
pub struct Alive {
    /// Always `ok`.
    status: &'static str,
}

/// The `/healthz` answer: the process runs.
pub fn alive() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// One dependency as readiness found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependency {
    /// Its field in the `/readyz` body.
    pub name: &'static str,
    /// Whether it answered within [`READY_CHECK_TIMEOUT`].
    pub up: bool,
}

/// Asks one dependency: `check` resolves to whether it answered, and one that takes longer
/// than [`READY_CHECK_TIMEOUT`] did not.
pub async fn probe(name: &'static str, check: impl Future<Output = bool>) -> Dependency {
    let up = tokio::time::timeout(READY_CHECK_TIMEOUT, check)
        .await
        .unwrap_or(false);
    Dependency { name, up }
}

/// Postgres, which answers when it runs `SELECT 1`.
pub async fn postgres(pool: &PgPool) -> Dependency {
    probe("postgres", crate::db::ping(pool)).await
}

/// The `/readyz` answer.
#[derive(Debug, Clone)]
pub struct Readiness {
    dependencies: Vec<Dependency>,
    /// Whether dependencies that answered are named too (`"redis":"ok"`), or only the others.
    name_all: bool,
}

impl Readiness {
    /// Names every dependency, `ok` or `unreachable`.
    pub fn naming_all(dependencies: impl IntoIterator<Item = Dependency>) -> Self {
        Self {
            dependencies: dependencies.into_iter().collect(),
            name_all: true,
        }
    }

    /// Names only the dependencies that did not answer: a ready service says just `ready`.
    pub fn naming_failures(dependencies: impl IntoIterator<Item = Dependency>) -> Self {
        Self {
            name_all: false,
            ..Self::naming_all(dependencies)
        }
    }

    /// Whether every dependency answered.
    pub fn is_ready(&self) -> bool {
        self.dependencies.iter().all(|dependency| dependency.up)
    }

    fn body(&self) -> Map<String, Value> {
        let ready = self.is_ready();
        let mut body = Map::new();
        body.insert(
            "status".to_owned(),
            if ready { "ready" } else { "unavailable" }.into(),
        );
        for dependency in &self.dependencies {
            if self.name_all || !dependency.up {
                let word = if dependency.up { "ok" } else { "unreachable" };
                body.insert(dependency.name.to_owned(), word.into());
            }
        }
        body
    }
}

impl IntoResponse for Readiness {
    fn into_response(self) -> Response {
        let status = if self.is_ready() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const POSTGRES_UP: Dependency = Dependency {
        name: "postgres",
        up: true,
    };
    const REDIS_DOWN: Dependency = Dependency {
        name: "redis",
        up: false,
    };

    #[test]
    fn naming_all_names_every_dependency_in_order() {
        let readiness = Readiness::naming_all([POSTGRES_UP, REDIS_DOWN]);
        assert!(!readiness.is_ready());
        assert_eq!(
            serde_json::to_string(&readiness.body()).unwrap(),
            r#"{"status":"unavailable","postgres":"ok","redis":"unreachable"}"#
        );
    }

    #[test]
    fn naming_failures_names_only_those_down() {
        assert_eq!(
            Value::Object(Readiness::naming_failures([POSTGRES_UP]).body()),
            json!({ "status": "ready" })
        );
        assert_eq!(
            Value::Object(Readiness::naming_failures([POSTGRES_UP, REDIS_DOWN]).body()),
            json!({ "status": "unavailable", "redis": "unreachable" })
        );
    }
}
