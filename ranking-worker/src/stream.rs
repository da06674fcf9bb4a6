//! The live board's push stream (SPEC §6 `GET /rankings/sold-out/stream`): Server-Sent Events,
//! the top on connect, then each schedule entering the ranking, resumable with `Last-Event-ID`.
//!
//! Every instance learns of new entries from the ranking's feed in Redis (`{K}:feed`, written by
//! the apply script, see `ranking.rs`), never from its own consumer, so a standby's clients see
//! what the active instance applies. One reader per process follows the feed (`XREAD BLOCK` on a
//! connection of its own) and fans each entry out to the clients through a `broadcast` channel:
//! a client costs a receiver, not a Redis connection. A client too slow to keep up lags behind
//! the channel's ring and is dropped; its browser reconnects with `Last-Event-ID` and gets what
//! it missed from the feed (or a fresh snapshot), so memory per client stays bounded. A backlog
//! drained at once is announced as one `reset`: this process reads one snapshot for all its
//! clients, and at most one per `SNAPSHOT_INTERVAL` (a drain resets the feed at every batch).
//! Each event is rendered once, by the reader; a client's cost per event is a copy of its bytes.
//!
//! The same reader keeps the read API's cache (`board_cache.rs`) honest: every entry it reads
//! invalidates it, and while it does not follow the feed (starting, Redis failed) the cache
//! keeps nothing.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use futures::{Stream, StreamExt};
use redis::aio::ConnectionManager;
use serde_json::json;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::board_cache::ReadCache;
use crate::ranking::{Announcement, Entry, FeedEntry, FeedId, Ranking};

/// Entries in the snapshot a client gets on connect.
pub const SNAPSHOT_SIZE: u64 = 20;
/// The most missed entries a resuming client is sent; one that missed more gets a snapshot.
const RESUME_MAX: u64 = 200;
/// Entries the fan-out holds for the slowest client; one further behind is dropped.
const FAN_OUT_CAPACITY: usize = 256;
/// How long one `XREAD` waits for an entry; its connection waits that much longer for answers.
const BLOCK: Duration = Duration::from_secs(5);
/// A comment line this often keeps proxies from closing an idle stream and lets the server
/// notice a client that is gone.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The browser's wait before reconnecting (the SSE `retry:` field).
const RECONNECT_AFTER: Duration = Duration::from_secs(2);
/// The least time between two snapshots sent after resets: a drain announces a reset per batch
/// (hundreds a second), and a snapshot to every client for each would cost the clients' CPU
/// more than the drain's; the board shows the drain's progress this often instead.
const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(250);
/// Pauses of the reader after a Redis failure: doubling from the first up to the last.
const RETRY_BASE: Duration = Duration::from_millis(250);
const RETRY_CAP: Duration = Duration::from_secs(5);

/// An event for every client, rendered once: a feed entry, or a snapshot the reader read after
/// a `reset`.
#[derive(Debug)]
struct Rendered {
    /// The feed's ID it is at: a client whose cursor is there already skips it.
    id: FeedId,
    /// Serialised and framed once; each client sends a copy.
    event: Event,
}

impl Rendered {
    fn new(id: FeedId, kind: &'static str, json: &str) -> Self {
        Self {
            id,
            event: Event::default().event(kind).id(id.to_string()).data(json),
        }
    }

    fn entry(announcement: &Announcement) -> Self {
        // Serialising a struct of plain fields cannot fail.
        let json = serde_json::to_string(&announcement.entry).unwrap_or_default();
        Self::new(announcement.id, "entry", &json)
    }

    /// `event: snapshot`: the top as the read API shows it, at the feed's ID it was read at.
    fn snapshot(key: &str, at: FeedId, entries: &[Entry]) -> Self {
        let json = json!({ "key": key, "entries": entries }).to_string();
        Self::new(at, "snapshot", &json)
    }

    fn event(&self) -> Event {
        self.event.clone()
    }
}

/// Why a client is not served.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("this instance already serves its maximum of {0} live clients")]
    Full(usize),
    #[error("redis: {0}")]
    Unavailable(#[from] redis::RedisError),
}

/// The process's side of the feed: the reader's settings, the fan-out and the cap on clients.
#[derive(Clone)]
pub struct Feed {
    ranking: Ranking,
    /// Where the reader connects: a connection of its own, since `XREAD BLOCK` holds it.
    redis_url: String,
    /// The fan-out; its ring is the only buffer of entries shared by the clients.
    sender: broadcast::Sender<Arc<Rendered>>,
    /// One permit per client (`STREAM_MAX_CLIENTS`).
    clients: Arc<Semaphore>,
    max_clients: usize,
    /// Cancelled when the reader stops (shutdown): every client's stream ends, so the HTTP
    /// server's graceful shutdown is not held open by them.
    closed: CancellationToken,
    /// The read API's cache, which the reader invalidates on every entry.
    cache: ReadCache,
}

impl Feed {
    pub fn new(ranking: Ranking, redis_url: &str, max_clients: usize, cache: ReadCache) -> Self {
        Self {
            ranking,
            redis_url: redis_url.to_owned(),
            sender: broadcast::channel(FAN_OUT_CAPACITY).0,
            clients: Arc::new(Semaphore::new(max_clients)),
            max_clients,
            closed: CancellationToken::new(),
            cache,
        }
    }

    /// The reader: follows the feed from its end and hands each new entry to the clients, until
    /// `shutdown`. A Redis failure pauses it, then it goes on from the last entry it handed on,
    /// so clients miss nothing a short outage held back.
    pub async fn run(self, shutdown: CancellationToken) {
        let _close_clients = self.closed.clone().drop_guard();
        let redis = match crate::redis_conn::connect_waiting(&self.redis_url, BLOCK) {
            Ok(redis) => redis,
            Err(error) => {
                tracing::error!(%error, "the live board's feed reader cannot start");
                return;
            }
        };
        let mut reader = Reader {
            redis,
            cursor: None,
            following: false,
            failures: 0,
            cache: self.cache.clone(),
            snapshot_due: None,
            last_snapshot: None,
        };
        // A stopped reader no longer sees changes: nothing may be served from the cache then.
        let _suspend_cache = SuspendOnDrop(self.cache.clone());
        loop {
            let read = tokio::select! {
                () = shutdown.cancelled() => return,
                read = reader.read(&self.ranking) => read,
            };
            match read {
                Ok(entries) => {
                    if reader.failures > 0 {
                        tracing::info!("the live board's feed reader is reading again");
                        reader.failures = 0;
                    }
                    for entry in entries {
                        // No receiver (no client) is not an error.
                        let _ = self.sender.send(Arc::new(entry));
                    }
                }
                Err(error) => {
                    // Changes made meanwhile would go unnoticed.
                    reader.cache.suspend();
                    reader.following = false;
                    reader.failures += 1;
                    if reader.failures == 1 {
                        tracing::warn!(%error, "the live board's feed reader cannot read the feed; retrying");
                    }
                    metrics::counter!("stream_feed_read_failures_total").increment(1);
                    let pause = crate::relay::backoff(reader.failures, RETRY_BASE, RETRY_CAP);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// A client's events: a snapshot of the top (or, resuming after `last_event_id`, the entries
    /// it missed), then each new entry, until it falls too far behind, the process stops or
    /// the client goes. `redis` is the API's shared connection: only the first read uses it.
    pub async fn subscribe(
        &self,
        redis: &mut ConnectionManager,
        last_event_id: Option<&str>,
    ) -> Result<impl Stream<Item = Result<Event, Infallible>> + Send + 'static, Refused> {
        let client = Client::admit(&self.clients).ok_or(Refused::Full(self.max_clients))?;
        // Subscribed before Redis is read: an entry added meanwhile is in the read or on the
        // channel (or both; the cursor skips it the second time).
        let live = self.sender.subscribe();
        let resume = last_event_id.and_then(|id| id.trim().parse::<FeedId>().ok());
        let missed = match resume {
            Some(after) => self
                .ranking
                .feed_after(redis, after, RESUME_MAX)
                .await?
                .map(|missed| (after, missed)),
            None => None,
        };
        let (first, cursor) = match missed {
            Some((after, missed)) => {
                let cursor = missed.last().map_or(after, |entry| entry.id);
                let events: Vec<Event> = missed
                    .iter()
                    .map(|entry| Rendered::entry(entry).event())
                    .collect();
                (events, cursor)
            }
            None => {
                let (at, entries) = self.ranking.snapshot(redis, SNAPSHOT_SIZE).await?;
                let snapshot = Rendered::snapshot(self.ranking.key(), at, &entries);
                (vec![snapshot.event()], at)
            }
        };
        let reconnect = Event::default().retry(RECONNECT_AFTER);
        let first = futures::stream::iter(
            std::iter::once(reconnect)
                .chain(first)
                .map(Ok::<_, Infallible>),
        );
        let live = futures::stream::unfold(
            (live, cursor, client),
            |(mut live, cursor, client)| async move {
                loop {
                    match live.recv().await {
                        Ok(entry) if entry.id > cursor => {
                            let event = entry.event();
                            return Some((Ok(event), (live, entry.id, client)));
                        }
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            metrics::counter!("stream_clients_dropped_total", "reason" => "lagged")
                                .increment(1);
                            tracing::info!(
                                missed,
                                "a live board client fell behind; closing its stream (it resumes from its last entry)"
                            );
                            return None;
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        );
        Ok(first
            .chain(live)
            .take_until(self.closed.clone().cancelled_owned()))
    }
}

/// The feed reader's state.
struct Reader {
    /// Its own connection: `XREAD BLOCK` holds a connection while it waits.
    redis: ConnectionManager,
    /// The last entry handed on; `None` until the feed's end is read.
    cursor: Option<FeedId>,
    /// Whether it follows the feed: false at start and after a failure, until it has read the
    /// feed's end again.
    following: bool,
    /// Consecutive failed reads.
    failures: u32,
    /// The read API's cache: invalidated by every entry read, kept only while following.
    cache: ReadCache,
    /// A reset was read and its snapshot not sent yet: when it may be (`SNAPSHOT_INTERVAL`
    /// after the last). Entries read meanwhile are not sent: the snapshot holds them.
    snapshot_due: Option<Instant>,
    last_snapshot: Option<Instant>,
}

/// `XREAD`'s reply: per stream, its entries (ID, fields).
type XreadReply = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;

impl Reader {
    /// The entries after the cursor, waiting up to `BLOCK` for one (or until a snapshot is
    /// due). A `reset` among them (a backlog drained, a replay) is read as one snapshot, for
    /// every client of this process, followed by the entries after it; resets closer together
    /// than `SNAPSHOT_INTERVAL` share one snapshot, read when it is due. A snapshot due stays
    /// due across a failure, so none is lost.
    async fn read(&mut self, ranking: &Ranking) -> redis::RedisResult<Vec<Rendered>> {
        if !self.following {
            self.follow(ranking).await?;
        }
        let cursor = self.cursor.unwrap_or(FeedId::START);
        let wait = self
            .snapshot_due
            .map_or(BLOCK, |due| due.saturating_duration_since(Instant::now()));
        let mut xread = redis::cmd("XREAD");
        xread.arg("COUNT").arg(FAN_OUT_CAPACITY / 2);
        // BLOCK 0 would wait forever: a snapshot due now reads what is there and returns.
        if !wait.is_zero() {
            xread.arg("BLOCK").arg(wait.as_millis().max(1) as u64);
        }
        let reply: XreadReply = xread
            .arg("STREAMS")
            .arg(ranking.keys().feed())
            .arg(cursor.to_string())
            .query_async(&mut self.redis)
            .await?;
        if reply.is_some() {
            // Whatever the entries say, the ranking changed.
            self.cache.invalidate();
        }
        let (mut rendered, mut last) = (Vec::new(), cursor);
        for (id, fields) in reply.into_iter().flatten().flat_map(|(_, entries)| entries) {
            let Ok(feed_id) = id.parse::<FeedId>() else {
                continue;
            };
            last = feed_id;
            match FeedEntry::parse(&id, &fields) {
                Some(FeedEntry::Entry(announcement)) => {
                    rendered.push(Rendered::entry(&announcement))
                }
                // The snapshot holds what came before.
                Some(FeedEntry::Reset(_)) => {
                    rendered.clear();
                    let next = self
                        .last_snapshot
                        .map_or_else(Instant::now, |last| last + SNAPSHOT_INTERVAL);
                    self.snapshot_due.get_or_insert(next);
                }
                None => tracing::warn!(%id, "a feed entry the worker did not write; skipped"),
            }
        }
        self.cursor = Some(last);
        let Some(due) = self.snapshot_due else {
            return Ok(rendered);
        };
        if Instant::now() < due {
            // Read after the reset, so in the snapshot to come.
            return Ok(Vec::new());
        }
        let (at, top) = ranking.snapshot(&mut self.redis, SNAPSHOT_SIZE).await?;
        self.snapshot_due = None;
        self.last_snapshot = Some(Instant::now());
        let after = rendered.into_iter().filter(|entry| entry.id > at);
        Ok(std::iter::once(Rendered::snapshot(ranking.key(), at, &top))
            .chain(after)
            .collect())
    }

    /// (Re)starts following the feed from its end. A feed behind the cursor was lost (Redis
    /// restarted empty): the cursor moves back to its end, so the entries a heal writes again
    /// are read (as changes for the cache; the clients skip the IDs they had). Every change
    /// before the feed's end is in Redis now, so from here the cache may keep what it reads.
    async fn follow(&mut self, ranking: &Ranking) -> redis::RedisResult<()> {
        let end = ranking.feed_last(&mut self.redis).await?;
        self.cursor = Some(match self.cursor {
            Some(cursor) if cursor <= end => cursor,
            _ => end,
        });
        self.cache.follow();
        self.following = true;
        Ok(())
    }
}

/// Switches the read cache off when the reader stops.
struct SuspendOnDrop(ReadCache);

impl Drop for SuspendOnDrop {
    fn drop(&mut self) {
        self.0.suspend();
    }
}

/// A client holding one of the permits, counted on `stream_clients` while it is connected.
struct Client {
    _permit: OwnedSemaphorePermit,
}

impl Client {
    fn admit(clients: &Arc<Semaphore>) -> Option<Self> {
        let permit = clients.clone().try_acquire_owned().ok()?;
        metrics::gauge!("stream_clients").increment(1);
        Some(Self { _permit: permit })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        metrics::gauge!("stream_clients").decrement(1);
    }
}
