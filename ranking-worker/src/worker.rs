//! The `run` command as an application: relay, wake-up listener and HTTP API, stopped together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::{self, HttpState};
use crate::ranking::{Ranking, RankingKeys};
use crate::relay::{self, Relay, RelaySettings};

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub http_addr: SocketAddr,
    pub redis_url: String,
    pub ranking_keys: RankingKeys,
    pub relay: RelaySettings,
    pub poll_interval: Duration,
    pub max_connections: u32,
}

pub struct Worker {
    listener: TcpListener,
    router: axum::Router,
    relay: Relay,
    pool: sqlx::PgPool,
    poll_interval: Duration,
}

impl Worker {
    pub async fn build(
        settings: WorkerSettings,
        database: PgConnectOptions,
    ) -> anyhow::Result<Self> {
        // Named, so operators (and the crash tests) can tell its sessions in pg_stat_activity.
        let database = database.application_name("ranking-worker");
        let pool = shared::db::pool_options(settings.max_connections).connect_lazy_with(database);
        let redis = crate::redis_conn::connect(&settings.redis_url)?;
        let ranking = Ranking::new(settings.ranking_keys);
        let state = HttpState {
            pool: pool.clone(),
            redis: redis.clone(),
            ranking: ranking.clone(),
            metrics: shared::metrics::prometheus_handle(),
        };
        let listener = TcpListener::bind(settings.http_addr).await?;
        Ok(Self {
            listener,
            router: http::router(state),
            relay: Relay::new(pool.clone(), redis, ranking, settings.relay),
            pool,
            poll_interval: settings.poll_interval,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or(0)
    }

    /// Runs until `shutdown`: the relay finishes the batch in hand, HTTP drains, then it returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = ?self.listener.local_addr()?, "ranking-worker listening");
        let tasks = TaskTracker::new();
        let wake = Arc::new(Notify::new());
        tasks.spawn(relay::listen_for_wakeups(
            self.pool.clone(),
            wake.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(relay::run(
            self.relay,
            wake,
            self.poll_interval,
            shutdown.clone(),
        ));
        let server = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let served = server.await;
        // The server also returns early if it fails; stop the relay with it.
        shutdown.cancel();
        tasks.close();
        tasks.wait().await;
        Ok(served?)
    }
}
