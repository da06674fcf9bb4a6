//! The read API's cache (GET /rankings/sold-out): pages served from memory with a strong ETag,
//! and never stale for longer than the feed's own latency: every change to the ranking (an entry,
//! a replay, a rebuild, a heal, Redis restarting empty) reaches every instance through the feed.

use std::time::Duration;

use ranking_worker::commands::{moderation, replay};
use ranking_worker::log::ReplayFilter;
use ranking_worker::moderation::Member;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{eventually, members, Harness, PrivateRedis};
use crate::stream::SseClient;

/// One answer of GET /rankings/sold-out.
struct Page {
    status: StatusCode,
    etag: String,
    body: String,
}

impl Page {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    fn members(&self) -> Vec<String> {
        self.json()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["member"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn get_page(base: &str, query: &str, if_none_match: Option<&str>) -> Page {
    let mut request = reqwest::Client::new().get(format!("{base}/rankings/sold-out?{query}"));
    if let Some(tag) = if_none_match {
        request = request.header(IF_NONE_MATCH, tag);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|value: &reqwest::header::HeaderValue| value.to_str().unwrap().to_owned())
    };
    let etag = header(ETAG).unwrap_or_default();
    if matches!(status, StatusCode::OK | StatusCode::NOT_MODIFIED) {
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "a strong ETag: {etag:?}"
        );
        assert_eq!(header(CACHE_CONTROL).as_deref(), Some("no-cache"));
    }
    if status == StatusCode::OK {
        assert_eq!(header(CONTENT_TYPE).as_deref(), Some("application/json"));
    }
    Page {
        status,
        etag,
        body: response.text().await.unwrap(),
    }
}

async fn top_ten(base: &str) -> Page {
    let page = get_page(base, "limit=10", None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_cached_page_changes_as_soon_as_an_entry_is_applied_on_the_active_and_a_standby(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let workers = harness.start_active_and_standby().await;
    let (active, standby) = (&workers.active, &workers.standby);
    let mut redis = harness.redis.clone();

    for base in [active, standby] {
        let mut live = SseClient::connect(base, None).await;
        assert_eq!(live.next().await.event, "snapshot");
        let before = top_ten(base).await;

        // The instance's live board has the entry: its feed reader has read it, and the page
        // read from now on is the new one.
        let events = harness.enqueue(1).await;
        live.entry().await;
        let after = top_ten(base).await;
        assert!(
            after.members().ends_with(&members(&events)),
            "{}",
            after.body
        );
        assert_ne!(after.etag, before.etag, "the ETag follows the content");

        // Served from memory: a member written by hand, behind the scripts' back (no feed
        // entry), is not seen.
        redis::cmd("ZADD")
            .arg(&harness.key)
            .arg(0.001)
            .arg("concert:0:schedule:0")
            .exec_async(&mut redis)
            .await
            .unwrap();
        let cached = top_ten(base).await;
        assert_eq!(cached.body, after.body);
        redis::cmd("ZREM")
            .arg(&harness.key)
            .arg("concert:0:schedule:0")
            .exec_async(&mut redis)
            .await
            .unwrap();

        // Revalidation: the current tag gets a 304 with no body; an old one the new page.
        let unchanged = get_page(base, "limit=10", Some(&after.etag)).await;
        assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
        assert_eq!(unchanged.etag, after.etag);
        assert_eq!(unchanged.body, "");
        let listed = format!("\"elsewhere\", {}", after.etag);
        let unchanged = get_page(base, "limit=10", Some(&listed)).await;
        assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
        let changed = get_page(base, "limit=10", Some(&before.etag)).await;
        assert_eq!(changed.status, StatusCode::OK);
        assert_eq!(changed.body, after.body);
        // Another query is another page, with its own tag.
        let second = get_page(base, "limit=10&offset=1", Some(&after.etag)).await;
        assert_eq!(second.status, StatusCode::OK);
        assert_ne!(second.etag, after.etag);
    }
}

/// Redis restarts empty and the consumer heals only later: the empty page read meanwhile must
/// not outlive the heal (its entries carry IDs the feed reader had already
/// passed before the restart).
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn the_page_read_while_redis_was_empty_is_not_kept_after_the_heal(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let mut redis_server = PrivateRedis::start();
    let harness = Harness::with_redis(database, &redis_server.url()).await;
    let (base, _stop) = harness.start_worker_guarded().await;
    let mut live = SseClient::connect(&base, None).await;
    assert_eq!(live.next().await.event, "snapshot");
    let events = harness.enqueue(3).await;
    for _ in 0..3 {
        live.entry().await;
    }
    assert_eq!(top_ten(&base).await.members().len(), 3);

    // The heal reads the log: while the test holds the outbox locked, it waits.
    let mut lock = harness.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    redis_server.restart();
    // Redis answers again, empty, and the feed reader follows the new feed: the empty page is
    // kept. Seen from outside: a member written by hand (no feed entry) after the page was read
    // is not shown.
    let mut redis = redis_server.connection().await;
    let hidden = "concert:0:schedule:0";
    eventually(Duration::from_secs(20), async || {
        let _ = redis::cmd("DEL")
            .arg(&harness.key)
            .exec_async(&mut redis)
            .await;
        let page = get_page(&base, "limit=10", None).await;
        if page.status != StatusCode::OK || !page.members().is_empty() {
            return false;
        }
        let written = redis::cmd("ZADD")
            .arg(&harness.key)
            .arg(1)
            .arg(hidden)
            .exec_async(&mut redis)
            .await;
        written.is_ok() && top_ten(&base).await.members().is_empty()
    })
    .await;
    redis::cmd("DEL")
        .arg(&harness.key)
        .exec_async(&mut redis)
        .await
        .unwrap();

    lock.rollback().await.unwrap();
    eventually(Duration::from_secs(20), async || {
        top_ten(&base).await.members().len() == 3
    })
    .await;
    let mut expected = members(&events);
    let next = harness.enqueue(1).await;
    expected.extend(members(&next));
    eventually(Duration::from_secs(20), async || {
        let mut shown = top_ten(&base).await.members();
        shown.sort();
        let mut expected = expected.clone();
        expected.sort();
        shown == expected
    })
    .await;
}

/// A replay, a rebuild and a moderation change the ranking without new entries: each announces
/// a reset, so the page every instance holds is read again.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_replay_a_rebuild_and_a_removal_leave_no_stale_page(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let (base, _stop) = harness.start_worker_guarded().await;
    let mut live = SseClient::connect(&base, None).await;
    assert_eq!(live.next().await.event, "snapshot");
    let events = harness.enqueue(3).await;
    for _ in 0..3 {
        live.entry().await;
    }
    let mut redis = harness.redis.clone();
    // The slowest: a wrong score of 0.001 moves it to the top.
    let lost = &members(&events)[2];

    // Redis loses a member (nothing on the feed says so); the next entry makes this instance
    // read and keep a page without it.
    redis::cmd("ZREM")
        .arg(&harness.key)
        .arg(lost)
        .exec_async(&mut redis)
        .await
        .unwrap();
    harness.enqueue(1).await;
    live.entry().await;
    assert!(!top_ten(&base).await.members().contains(lost));

    replay::replay(
        &harness.pool,
        &mut redis,
        &harness.ranking,
        &ReplayFilter::default(),
        false,
    )
    .await
    .unwrap();
    // Once the live board has the replay's reset, so has the cache.
    assert_eq!(live.next().await.event, "snapshot");
    let replayed = top_ten(&base).await;
    assert!(replayed.members().contains(lost), "{}", replayed.body);
    assert_eq!(replayed.members().len(), 4);

    // A score changed by hand, then an entry: the page kept shows the wrong score first.
    redis::cmd("ZADD")
        .arg(&harness.key)
        .arg("XX")
        .arg(0.001)
        .arg(lost)
        .exec_async(&mut redis)
        .await
        .unwrap();
    harness.enqueue(1).await;
    live.entry().await;
    assert_eq!(top_ten(&base).await.members()[0], *lost);

    replay::rebuild(&harness.pool, &mut redis, &harness.ranking)
        .await
        .unwrap();
    assert_eq!(live.next().await.event, "snapshot");
    let rebuilt = top_ten(&base).await;
    assert_eq!(rebuilt.members().len(), 5);
    assert_ne!(rebuilt.members()[0], *lost, "{}", rebuilt.body);
    let score = rebuilt.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["member"] == lost.as_str())
        .unwrap()["sold_out_seconds"]
        .clone();
    assert_eq!(score, events[2].sold_out_seconds());

    // An entry hidden by an operator leaves the page; restored, it is back.
    let top: Member = rebuilt.members()[0].parse().unwrap();
    moderation::remove(
        &harness.pool,
        &mut redis,
        &harness.ranking,
        &top,
        "test",
        "ops",
    )
    .await
    .unwrap();
    assert_eq!(live.next().await.event, "snapshot");
    let shown = top_ten(&base).await.members();
    assert!(!shown.contains(&top.to_string()), "{shown:?}");
    moderation::restore(&harness.pool, &mut redis, &harness.ranking, &top, "ops")
        .await
        .unwrap();
    assert_eq!(live.next().await.event, "snapshot");
    assert_eq!(top_ten(&base).await.members(), rebuilt.members());
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_bad_query_is_still_a_400_and_not_cached(_: PgPoolOptions, database: PgConnectOptions) {
    let harness = Harness::new(database).await;
    let (base, _stop) = harness.start_worker_guarded().await;
    let good = top_ten(&base).await;
    for query in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "offset=-1",
        "offset=100001",
        "limit=10&page=2",
    ] {
        for tag in [None, Some(good.etag.as_str()), Some("*")] {
            let page = get_page(&base, query, tag).await;
            assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
            let problem: Value = serde_json::from_str(&page.body).unwrap();
            assert_eq!(problem["code"], "MALFORMED_REQUEST", "{query}");
        }
    }
    for query in ["period=year", "period=day&at=2026-13-01", "at=2026-11-25"] {
        let page = get_page(&base, query, Some("*")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
        let problem: Value = serde_json::from_str(&page.body).unwrap();
        assert_eq!(problem["code"], "MALFORMED_REQUEST", "{query}");
    }
    assert_eq!(top_ten(&base).await.body, good.body);
    // A period's board is a page of its own, not the all-time one kept under another query.
    let day = get_page(&base, "limit=10&period=day&at=2026-11-25", None).await;
    assert_eq!(day.status, StatusCode::OK);
    assert_ne!(day.etag, good.etag);
    assert!(day.json()["period"].is_object(), "{}", day.body);
}
