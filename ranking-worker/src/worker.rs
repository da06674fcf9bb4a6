//! The `run` command as an application: the consumers (each active or standing by, each in a
//! task of its own), their wake-up listener and the HTTP API, stopped together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::ExposeSecret;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::board_cache::ReadCache;
use crate::consumer::{self, ConsumerRun, Sink};
use crate::health::ConsumerHealth;
use crate::http::{self, HttpState};
use crate::leadership::Leadership;
use crate::periods::PeriodSettings;
use crate::ranking::{Ranking, RankingKeys};
use crate::redis_conn::RedisUrl;
use crate::relay::{Relay, RelaySettings};
use crate::stream::Feed;
use crate::webhook::{WebhookSettings, WebhookSink};

/// Pooled connections the worker needs at least: one for the consumer's reads and writes, one
/// for the HTTP API's. The advisory lock and LISTEN have connections of their own.
pub const MIN_POOL_CONNECTIONS: u32 = 2;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Where the HTTP API listens (`RANKING_HTTP_ADDR`); port 0 picks a free one.
    pub http_addr: SocketAddr,
    /// Redis, where the ranking lives (`REDIS_URL`).
    pub redis_url: RedisUrl,
    /// The ranking's key and its hash-tagged helper keys (`RANKING_KEY`).
    pub ranking_keys: RankingKeys,
    /// The period boards' time zone and retention.
    pub periods: PeriodSettings,
    /// Batch size and retry pauses of the ranking consumer.
    pub relay: RelaySettings,
    /// The fallback poll when no notification arrives (`POLL_INTERVAL_MS`).
    pub poll_interval: Duration,
    /// The worker's Postgres pool (`DATABASE_MAX_CONNECTIONS`).
    pub max_connections: u32,
    /// The sold-out webhook, when `SOLD_OUT_WEBHOOK_URL` is set.
    pub webhook: Option<WebhookSettings>,
    /// Most clients of the live stream at once (`STREAM_MAX_CLIENTS`).
    pub stream_max_clients: usize,
}

/// Connections of the webhook consumer's own pool (reads, dead letters), beside the worker's
/// pool, so a slow receiver never holds one the ranking or the HTTP API needs.
pub const WEBHOOK_POOL_CONNECTIONS: u32 = 2;

pub struct Worker {
    /// The HTTP API's socket, bound at build so tests can ask for port 0 and read the port.
    listener: TcpListener,
    router: axum::Router,
    /// Every consumer this process runs, each ready to start in a task of its own.
    consumers: Vec<Registered>,
    /// Where the wake-up listener connects (its own connection, outside the pool).
    database: PgConnectOptions,
    /// The live board's feed, whose reader runs beside the consumers.
    feed: Feed,
}

/// A consumer ready to run: its loop, and what the HTTP API and the wake-up listener share
/// with it.
struct Registered {
    /// What the consumer reports (active or standby, paused, lag), read by HTTP and metrics.
    health: ConsumerHealth,
    /// Notified by the wake-up listener when a payment commits an event.
    wake: Arc<Notify>,
    /// The consumer's loop, started in a task of its own by `run_until_stopped`.
    run: Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>,
}

/// What every consumer's loop gets from the process.
struct Registrar {
    /// Where each consumer's leadership lock opens its own session.
    database: PgConnectOptions,
    /// This process's name in `status` (`host:pid`).
    instance: String,
    /// The fallback poll of every consumer.
    poll_interval: Duration,
}

impl Registrar {
    /// `sink` as a consumer of this process, its loop working with `pool`: its own lock on its
    /// name, its own health and wake-up.
    fn register<S: Sink + 'static>(&self, sink: S, pool: PgPool) -> Registered {
        let run = ConsumerRun {
            pool,
            leadership: Leadership::new(self.database.clone(), sink.name()),
            health: ConsumerHealth::new(sink.name()),
            instance: self.instance.clone(),
            wake: Arc::new(Notify::new()),
            poll_interval: self.poll_interval,
        };
        Registered {
            health: run.health.clone(),
            wake: run.wake.clone(),
            run: Box::new(move |shutdown| Box::pin(consumer::run(sink, run, shutdown))),
        }
    }
}

impl Worker {
    pub async fn build(
        settings: WorkerSettings,
        database: PgConnectOptions,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            settings.max_connections >= MIN_POOL_CONNECTIONS,
            "DATABASE_MAX_CONNECTIONS must be at least {MIN_POOL_CONNECTIONS} for ranking-worker run \
             (one for the consumer, one for the HTTP API), got {}",
            settings.max_connections
        );
        // Named, so operators (and the crash tests) can tell its sessions in pg_stat_activity.
        let database = database.application_name("ranking-worker");
        let pool =
            shared::db::pool_options(settings.max_connections).connect_lazy_with(database.clone());
        let mut redis = crate::redis_conn::connect(settings.redis_url.expose_secret())?;
        // Refused at start when Redis answers; a Redis that is down is checked when it is back.
        match tokio::time::timeout(
            Duration::from_secs(3),
            crate::redis_conn::eviction_policy(&mut redis),
        )
        .await
        {
            Ok(Ok(policy)) => crate::redis_conn::refuse_evicting_policy(policy.as_deref())?,
            _ => tracing::warn!("cannot reach Redis at start; the consumer waits for it"),
        }
        let ranking = Ranking::new(settings.ranking_keys).with_periods(settings.periods);

        // The consumers: one line each.
        let registrar = Registrar {
            database: database.clone(),
            instance: instance_name(),
            poll_interval: settings.poll_interval,
        };
        let relay = Relay::new(
            pool.clone(),
            settings.redis_url.expose_secret(),
            ranking.clone(),
            settings.relay.clone(),
        )?;
        let mut consumers = vec![registrar.register(relay, pool.clone())];
        if let Some(webhook) = settings.webhook {
            let own = shared::db::pool_options(WEBHOOK_POOL_CONNECTIONS)
                .connect_lazy_with(database.clone());
            let sink = WebhookSink::new(own.clone(), webhook, settings.relay)?;
            consumers.push(registrar.register(sink, own));
        }

        let cache = ReadCache::new();
        let feed = Feed::new(
            ranking.clone(),
            settings.redis_url.expose_secret(),
            settings.stream_max_clients,
            cache.clone(),
        );
        let state = HttpState {
            pool,
            redis,
            feed: feed.clone(),
            cache,
            ranking,
            metrics: shared::metrics::prometheus_handle(),
            consumers: consumers.iter().map(|c| c.health.clone()).collect(),
        };
        let listener = TcpListener::bind(settings.http_addr).await?;
        Ok(Self {
            listener,
            router: http::router(state),
            consumers,
            database,
            feed,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or(0)
    }

    /// Runs until `shutdown`: each consumer finishes the batch in hand, HTTP drains, then it
    /// returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = ?self.listener.local_addr()?, "ranking-worker listening");
        let tasks = TaskTracker::new();
        let wakes = self.consumers.iter().map(|c| c.wake.clone()).collect();
        tasks.spawn(crate::wakeup::listen_for_wakeups(
            self.database,
            wakes,
            shutdown.clone(),
        ));
        // A consumer that panics stops the process (exit status 1), so the orchestrator
        // restarts it and a standby takes over meanwhile, rather than serving a board nobody
        // keeps up to date behind a green /readyz.
        let consumer_panicked = CancellationToken::new();
        for consumer in self.consumers {
            let name = consumer.health.name();
            let run = tokio::spawn((consumer.run)(shutdown.clone()));
            let (shutdown, consumer_panicked) = (shutdown.clone(), consumer_panicked.clone());
            tasks.spawn(async move {
                if let Err(error) = run.await {
                    tracing::error!(consumer = name, %error, "the consumer panicked; stopping");
                    consumer_panicked.cancel();
                    shutdown.cancel();
                }
            });
        }
        tasks.spawn(self.feed.run(shutdown.clone()));
        let server = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let served = server.await;
        // The server also returns early if it fails; stop the consumers with it.
        shutdown.cancel();
        tasks.close();
        tasks.wait().await;
        served?;
        anyhow::ensure!(
            !consumer_panicked.is_cancelled(),
            "a consumer panicked (see the ERROR line before)"
        );
        Ok(())
    }
}

/// This process as `status` names the active instance: host and process id.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    format!("{host}:{}", std::process::id())
}
