//! The read API's cache (`GET /rankings/sold-out`): each query's rendered JSON body and its
//! strong `ETag`, kept in this process until the ranking changes.
//!
//! A front page reads the board far more often than it changes, and every change reaches every
//! instance through the feed (`{K}:feed`, written by the scripts that change the ranking). This
//! process's feed reader (`stream.rs`) invalidates the cache on every feed entry it reads, and
//! switches it off while it does not follow the feed (starting, Redis lost, reconnecting): a
//! board is never served from here longer than the feed's own latency after it changed.
//!
//! The race a cache like this must not lose: a request reads Redis, the ranking changes, the
//! reader invalidates, and only then the request stores what it read. Each request takes a
//! [`Ticket`] (the generation) before it reads Redis, and its body is stored only if no
//! invalidation came in between.
//!
//! Some changes reach no feed: a period board expiring after its retention, keys deleted by
//! hand, a binary from before every change was announced. A body is therefore also kept at most
//! [`MAX_AGE`]: the feed makes ordinary changes visible at once, the age bounds the rest.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderValue;
use sha2::{Digest, Sha256};

/// Distinct queries kept at once. A client walking through many pages fills it; it is then
/// emptied, so the hot queries (the front page's) are back at their next request.
pub const CAPACITY: usize = 256;

/// Longest a body is served from here, however quiet the feed: one Redis read per query and
/// second is nothing beside the reads the cache saves, and it bounds a change no feed told of.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// What a cached body is kept under: the request's parameters once read and checked, with their
/// defaults filled in, so `?limit=10` and no query share one body. Every parameter that changes
/// the body belongs here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BoardQuery {
    /// The period board's name (`day:Asia/Seoul:2026-11-25`), `at` resolved: a page asked for
    /// "today" is kept under the date it was read for. `None`: the all-time board.
    pub board: Option<String>,
    pub limit: u64,
    pub offset: u64,
}

/// The read API's cache, as the process shares it.
pub type ReadCache = BoardCache<BoardQuery>;

/// A rendered board: the body as sent and its strong validator.
#[derive(Debug)]
pub struct Rendered {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl Rendered {
    /// The body with its `ETag`: a digest of the bytes, so every instance serving the same board
    /// gives the same tag, and a changed board a different one.
    pub fn new(body: Bytes) -> Self {
        let digest = Sha256::digest(&body);
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        Self {
            body,
            // Quotes and hex digits only: always a valid header value.
            etag: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
        }
    }

    /// Whether an `If-None-Match` header names this body (RFC 9110 §13.1.2: `*`, or one of the
    /// listed tags, compared weakly).
    pub fn matches(&self, if_none_match: &HeaderValue) -> bool {
        let Ok(tags) = if_none_match.to_str() else {
            return false;
        };
        let own = self.etag.to_str().unwrap_or_default();
        tags.split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == own)
    }
}

/// The generation a request saw before it read Redis; its body is stored only under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// The cache, shared by the HTTP handlers and the feed reader; cheap to clone.
#[derive(Clone)]
pub struct BoardCache<K> {
    inner: Arc<Mutex<Inner<K>>>,
}

struct Inner<K> {
    /// Moves on every invalidation: a ticket from before it no longer stores.
    generation: u64,
    /// Whether the feed reader follows the feed; while not, nothing is stored or served.
    live: bool,
    /// Each body with when it was read.
    bodies: HashMap<K, (Instant, Arc<Rendered>)>,
}

impl<K: Hash + Eq> BoardCache<K> {
    /// A cache that serves nothing until the feed reader follows the feed ([`Self::follow`]).
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                generation: 0,
                live: false,
                bodies: HashMap::new(),
            })),
        }
    }

    /// The body cached for `query`, if any younger than [`MAX_AGE`].
    pub fn get(&self, query: &K) -> Option<Arc<Rendered>> {
        self.get_at(query, Instant::now())
    }

    fn get_at(&self, query: &K, now: Instant) -> Option<Arc<Rendered>> {
        let inner = self.lock();
        if !inner.live {
            return None;
        }
        let (read_at, rendered) = inner.bodies.get(query)?;
        (now.saturating_duration_since(*read_at) < MAX_AGE).then(|| rendered.clone())
    }

    /// To take before reading Redis for a query: [`Self::insert`] stores under it only if the
    /// ranking did not change (as far as the feed tells) since.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.lock().generation)
    }

    /// Stores `rendered` for `query`, if the cache is live and nothing invalidated it since
    /// `ticket` was taken.
    pub fn insert(&self, query: K, ticket: Ticket, rendered: Arc<Rendered>) {
        let read_at = Instant::now();
        let mut inner = self.lock();
        if !inner.live || inner.generation != ticket.0 {
            return;
        }
        if inner.bodies.len() >= CAPACITY && !inner.bodies.contains_key(&query) {
            inner.bodies.clear();
        }
        inner.bodies.insert(query, (read_at, rendered));
    }

    /// The ranking changed (the feed has a new entry): forget every body.
    pub fn invalidate(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.bodies.clear();
    }

    /// The feed reader follows the feed again from a point it read after every change before
    /// it: what is read from now on may be kept.
    pub fn follow(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.bodies.clear();
        inner.live = true;
    }

    /// The feed reader lost the feed (Redis failed, or it stops): a change now would go
    /// unnoticed, so nothing is kept or served until it follows it again.
    pub fn suspend(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.bodies.clear();
        inner.live = false;
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K>> {
        // The lock guards plain data that no panic leaves half-written.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<K: Hash + Eq> Default for BoardCache<K> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(body: &'static str) -> Arc<Rendered> {
        Arc::new(Rendered::new(Bytes::from_static(body.as_bytes())))
    }

    #[test]
    fn nothing_is_kept_until_the_reader_follows_the_feed() {
        let cache = BoardCache::new();
        let ticket = cache.ticket();
        cache.insert("q", ticket, rendered("a"));
        assert!(cache.get(&"q").is_none());
        cache.follow();
        let ticket = cache.ticket();
        cache.insert("q", ticket, rendered("a"));
        assert_eq!(cache.get(&"q").unwrap().body, "a");
        cache.suspend();
        assert!(
            cache.get(&"q").is_none(),
            "not served while the feed is lost"
        );
    }

    #[test]
    fn a_body_read_before_an_invalidation_is_not_stored_after_it() {
        let cache = BoardCache::new();
        cache.follow();
        let before = cache.ticket();
        cache.invalidate();
        cache.insert("q", before, rendered("stale"));
        assert!(cache.get(&"q").is_none());
        let after = cache.ticket();
        cache.insert("q", after, rendered("fresh"));
        assert_eq!(cache.get(&"q").unwrap().body, "fresh");
        cache.invalidate();
        assert!(cache.get(&"q").is_none());
    }

    #[test]
    fn a_body_is_served_at_most_max_age_without_a_feed_entry() {
        let cache = BoardCache::new();
        cache.follow();
        cache.insert("q", cache.ticket(), rendered("a"));
        let now = Instant::now();
        assert!(cache.get_at(&"q", now).is_some());
        assert!(cache.get_at(&"q", now + MAX_AGE).is_none());
    }

    #[test]
    fn the_cache_holds_at_most_capacity_queries() {
        let cache = BoardCache::new();
        cache.follow();
        for query in 0..CAPACITY + 1 {
            cache.insert(query, cache.ticket(), rendered("a"));
        }
        assert!(cache.lock().bodies.len() <= CAPACITY);
        assert!(cache.get(&CAPACITY).is_some(), "the newest is kept");
    }

    #[test]
    fn the_etag_follows_the_body_and_if_none_match_compares_it() {
        let (a, b) = (rendered("a"), rendered("b"));
        assert_eq!(a.etag, rendered("a").etag);
        assert_ne!(a.etag, b.etag);
        let tag = a.etag.to_str().unwrap().to_owned();
        for header in [
            tag.clone(),
            format!("W/{tag}"),
            format!("\"x\", {tag}"),
            "*".into(),
        ] {
            assert!(
                a.matches(&HeaderValue::from_str(&header).unwrap()),
                "{header}"
            );
        }
        assert!(!b.matches(&a.etag));
        assert!(!a.matches(&HeaderValue::from_static("\"x\"")));
    }
}
