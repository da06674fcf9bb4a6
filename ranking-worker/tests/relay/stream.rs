//! The live board: its push stream (GET /rankings/sold-out/stream) on every instance, standbys
//! too, resumable without missing or repeating an entry, capped; and its page (GET /).

use std::time::Duration;

use ranking_worker::commands::replay;
use ranking_worker::log::ReplayFilter;
use ranking_worker::ranking::FeedId;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::helpers::{eventually, members, Harness, PrivateRedis};

/// One Server-Sent Event.
#[derive(Debug)]
pub(crate) struct SseEvent {
    pub(crate) event: String,
    pub(crate) id: Option<String>,
    pub(crate) data: Value,
}

/// A client of the stream, reading its events as a browser would.
pub(crate) struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    pub(crate) async fn connect(base: &str, last_event_id: Option<&str>) -> Self {
        let mut request = reqwest::Client::new().get(format!("{base}/rankings/sold-out/stream"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event with data (comments and `retry:` alone are skipped), within 10 s.
    pub(crate) async fn next(&mut self) -> SseEvent {
        tokio::time::timeout(Duration::from_secs(10), self.read())
            .await
            .expect("an event within 10 s")
    }

    async fn read(&mut self) -> SseEvent {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = ("message".to_owned(), None, None);
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => event = value.to_owned(),
                        "id" => id = Some(value.to_owned()),
                        "data" => data = Some(serde_json::from_str(value).unwrap()),
                        _ => {}
                    }
                }
                if let Some(data) = data {
                    return SseEvent { event, id, data };
                }
            }
            let chunk = self
                .response
                .chunk()
                .await
                .unwrap()
                .expect("the stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event, which must be an `entry`.
    pub(crate) async fn entry(&mut self) -> SseEvent {
        let event = self.next().await;
        assert_eq!(event.event, "entry", "{event:?}");
        event
    }
}

/// A harness and a worker on it, which stops when the guard is dropped.
async fn started(database: PgConnectOptions) -> (Harness, String, DropGuard) {
    let harness = Harness::new(database).await;
    let (base, stop) = harness.start_worker_guarded().await;
    (harness, base, stop)
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_standby_instances_clients_see_what_the_active_one_applies(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let workers = harness.start_active_and_standby().await;
    let standby = &workers.standby;

    let mut stream = SseClient::connect(standby, None).await;
    let snapshot = stream.next().await;
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.data["entries"], serde_json::json!([]));
    assert_eq!(snapshot.data["key"], harness.key.as_str());

    let events = harness.enqueue(3).await;
    let mut seen = Vec::new();
    let mut last_id = snapshot.id.clone().unwrap();
    for _ in 0..3 {
        let entry = stream.entry().await;
        let id = entry.id.clone().unwrap();
        assert!(
            id.parse::<FeedId>().unwrap() > last_id.parse::<FeedId>().unwrap(),
            "ids grow: {last_id} then {id}"
        );
        last_id = id;
        seen.push(entry.data);
    }
    assert_eq!(
        seen.iter()
            .map(|entry| entry["member"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
        members(&events),
        "in log order"
    );
    for (entry, event) in seen.iter().zip(&events) {
        assert_eq!(entry["concert_title"], event.concert_title.as_str());
        assert_eq!(entry["sold_out_seconds"], event.sold_out_seconds());
        assert!(entry["rank"].as_u64().unwrap() >= 1);
        assert!(entry["sold_out_at"].is_string());
    }
    // The rank it entered at, after its batch: the three are ranked 1..=3 between them.
    let mut ranks: Vec<u64> = seen.iter().map(|e| e["rank"].as_u64().unwrap()).collect();
    ranks.sort();
    assert_eq!(ranks, [1, 2, 3]);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_client_resuming_with_last_event_id_gets_exactly_what_it_missed(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let (harness, base, _stop) = started(database).await;

    let mut stream = SseClient::connect(&base, None).await;
    assert_eq!(stream.next().await.event, "snapshot");
    harness.enqueue(2).await;
    stream.entry().await;
    let last_seen = stream.entry().await.id.unwrap();
    drop(stream);

    let missed = harness.enqueue(3).await;
    eventually(Duration::from_secs(10), async || {
        harness.applied_events().await == 5
    })
    .await;
    let mut resumed = SseClient::connect(&base, Some(&last_seen)).await;
    for event in members(&missed) {
        assert_eq!(resumed.entry().await.data["member"], event.as_str());
    }
    // Nothing twice: the next event is the next new entry.
    let next = harness.enqueue(1).await;
    assert_eq!(
        resumed.entry().await.data["member"],
        members(&next)[0].as_str()
    );

    // An ID the feed cannot resume from (unknown to it, or not an ID) gets a fresh snapshot.
    for id in ["99999999999-0", "garbage"] {
        let mut fresh = SseClient::connect(&base, Some(id)).await;
        let snapshot = fresh.next().await;
        assert_eq!(snapshot.event, "snapshot", "{id}");
        assert_eq!(snapshot.data["entries"].as_array().unwrap().len(), 6);
    }
}

/// What a heal, a replay or a rebuild changes is announced as a `reset` (clients get a fresh
/// snapshot; every instance's read cache forgets its pages), never as old entries shown as new.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_heal_a_replay_and_a_rebuild_announce_no_old_entry_again(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let (harness, base, _stop) = started(database).await;
    harness.enqueue(5).await;
    eventually(Duration::from_secs(10), async || {
        harness.applied_events().await == 5
    })
    .await;
    let mut stream = SseClient::connect(&base, None).await;
    let snapshot = stream.next().await;
    assert_eq!(snapshot.data["entries"].as_array().unwrap().len(), 5);
    let mut redis = harness.redis.clone();
    // The feed's entries and resets.
    let feed_counts = async |redis: &mut redis::aio::ConnectionManager| -> (usize, usize) {
        let feed: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(harness.ranking.keys().feed())
            .arg("-")
            .arg("+")
            .query_async(redis)
            .await
            .unwrap();
        let resets = feed
            .iter()
            .filter(|(_, fields)| fields[0] == "reset")
            .count();
        (feed.len() - resets, resets)
    };
    assert_eq!(feed_counts(&mut redis).await, (5, 0));

    // Redis loses the position (and the board): the worker heals by applying the log again.
    redis::cmd("DEL")
        .arg(harness.ranking.keys().position())
        .arg(&harness.key)
        .exec_async(&mut redis)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), async || {
        harness.applied_events().await == 10
    })
    .await;
    assert_eq!(feed_counts(&mut redis).await, (5, 1), "the heal is a reset");
    let healed = stream.next().await;
    assert_eq!(healed.event, "snapshot", "{healed:?}");
    assert_eq!(healed.data, snapshot.data);
    // A replay restoring what Redis lost is a reset; one that restores nothing adds nothing.
    redis::cmd("ZREM")
        .arg(&harness.key)
        .arg(snapshot.data["entries"][0]["member"].as_str().unwrap())
        .exec_async(&mut redis)
        .await
        .unwrap();
    for _ in 0..2 {
        replay::replay(
            &harness.pool,
            &mut redis,
            &harness.ranking,
            &ReplayFilter::default(),
            false,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        feed_counts(&mut redis).await,
        (5, 2),
        "one reset for two replays"
    );
    replay::replay(
        &harness.pool,
        &mut redis,
        &harness.ranking,
        &ReplayFilter::default(),
        false,
    )
    .await
    .unwrap();
    replay::rebuild(&harness.pool, &mut redis, &harness.ranking)
        .await
        .unwrap();
    assert_eq!(
        feed_counts(&mut redis).await,
        (5, 3),
        "no entry added again; the rebuild's swap is a reset"
    );

    // The client gets fresh snapshots of the same board, then the next new entry (on its own,
    // or in a snapshot read after it: resets close together share one), and no old entry again.
    let next = harness.enqueue(1).await;
    let new = members(&next)[0].clone();
    loop {
        let event = stream.next().await;
        if event.event == "entry" {
            assert_eq!(event.data["member"], new.as_str());
            break;
        }
        assert_eq!(event.event, "snapshot", "{event:?}");
        let shown = event.data["entries"].as_array().unwrap();
        if shown.iter().any(|entry| entry["member"] == new.as_str()) {
            assert_eq!(shown.len(), 6);
            break;
        }
        assert_eq!(event.data, snapshot.data);
    }
    assert_eq!(feed_counts(&mut redis).await, (6, 3));
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn clients_beyond_stream_max_clients_are_answered_503(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let settings = ranking_worker::worker::WorkerSettings {
        stream_max_clients: 1,
        ..harness.worker_settings(Duration::from_millis(50))
    };
    let base = harness.start_worker_from(settings, &shutdown).await;
    let mut first = SseClient::connect(&base, None).await;
    assert_eq!(first.next().await.event, "snapshot");

    let url = format!("{base}/rankings/sold-out/stream");
    let client = reqwest::Client::new();
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "UNAVAILABLE");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("STREAM_MAX_CLIENTS"));

    // A client that leaves frees its place (noticed at the latest by the next heartbeat).
    drop(first);
    eventually(Duration::from_secs(20), async || {
        client.get(&url).send().await.unwrap().status() == StatusCode::OK
    })
    .await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn the_board_is_one_self_contained_html_page(_: PgPoolOptions, database: PgConnectOptions) {
    let (_harness, base, _stop) = started(database).await;
    let response = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let page = response.text().await.unwrap();
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(page.contains("rankings/sold-out/stream"));
    assert!(page.contains("EventSource"));
    for external in [
        "http://",
        "https://",
        "src=\"//",
        "href=\"//",
        "url(//",
        "@import",
    ] {
        assert!(!page.contains(external), "the page refers to {external}");
    }
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn open_streams_end_when_the_worker_stops(_: PgPoolOptions, database: PgConnectOptions) {
    let harness = Harness::new(database).await;
    let shutdown = CancellationToken::new();
    let base = harness
        .start_worker(Duration::from_millis(50), &shutdown)
        .await;
    let mut stream = SseClient::connect(&base, None).await;
    assert_eq!(stream.next().await.event, "snapshot");
    shutdown.cancel();
    // The server's graceful shutdown is not held open by its live clients.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while stream.response.chunk().await.ok().flatten().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ended with the worker");
}

/// A backlog drained at once is announced as one `reset`: clients get a fresh snapshot, not an
/// event per entry, and a client resuming from before it gets a snapshot too.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_drained_backlog_is_one_snapshot_not_an_event_per_entry(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let (harness, base, _stop) = started(database).await;
    let mut stream = SseClient::connect(&base, None).await;
    let before = stream.next().await.id.unwrap();
    // More than FEED_ANNOUNCE_MAX in the worker's first batch (BATCH_SIZE 100 in tests).
    let backlog = 2 * ranking_worker::ranking::FEED_ANNOUNCE_MAX as usize;
    harness.enqueue(backlog).await;
    eventually(Duration::from_secs(10), async || {
        harness.applied_events().await as usize == backlog
    })
    .await;
    let snapshot = stream.next().await;
    assert_eq!(snapshot.event, "snapshot", "{snapshot:?}");
    assert_eq!(snapshot.data["entries"].as_array().unwrap().len(), 20);
    let mut redis = harness.redis.clone();
    let feed: u64 = redis::cmd("XLEN")
        .arg(harness.ranking.keys().feed())
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(feed, 1, "one reset, no entry per event");

    let mut resumed = SseClient::connect(&base, Some(&before)).await;
    assert_eq!(resumed.next().await.event, "snapshot");
    // Events after it are announced one by one again.
    let next = harness.enqueue(1).await;
    assert_eq!(
        stream.entry().await.data["member"],
        members(&next)[0].as_str()
    );
}

/// Redis restarts empty under connected clients: the worker heals the ranking (re-applying and
/// re-adding the old entries to the new feed), its feed reader reconnects, and the clients get
/// the next new entry and nothing old again.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn clients_see_nothing_old_again_when_redis_restarts_empty(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let mut redis_server = PrivateRedis::start();
    let harness = Harness::with_redis(database, &redis_server.url()).await;
    let (base, _stop) = harness.start_worker_guarded().await;
    let mut stream = SseClient::connect(&base, None).await;
    assert_eq!(stream.next().await.event, "snapshot");
    harness.enqueue(3).await;
    for _ in 0..3 {
        stream.entry().await;
    }

    redis_server.restart();
    eventually(Duration::from_secs(20), async || {
        harness
            .try_scores()
            .await
            .is_ok_and(|scores| scores.len() == 3)
    })
    .await;
    let next = harness.enqueue(1).await;
    let entry = tokio::time::timeout(Duration::from_secs(20), stream.read())
        .await
        .expect("the next entry within 20 s");
    assert_eq!(entry.event, "entry");
    assert_eq!(entry.data["member"], members(&next)[0].as_str());
}

/// A drain resets the feed at every batch: resets close together share one snapshot (read when
/// it is due, so it holds everything read until then), and the clients end on the board as it
/// is after the last batch, with nothing lost.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn resets_close_together_share_a_snapshot_and_the_last_board_arrives(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let (harness, base, _stop) = started(database).await;
    let mut stream = SseClient::connect(&base, None).await;
    assert_eq!(stream.next().await.event, "snapshot");
    // Batches of 100 (BATCH_SIZE in tests), each more than FEED_ANNOUNCE_MAX: a reset each.
    let batches = 5;
    for _ in 0..batches {
        harness.enqueue(100).await;
    }
    eventually(Duration::from_secs(20), async || {
        harness.applied_events().await == 100 * batches
    })
    .await;
    let mut redis = harness.redis.clone();
    let last: FeedId = harness.ranking.feed_last(&mut redis).await.unwrap();
    let mut snapshots = 0;
    loop {
        let event = stream.next().await;
        assert_eq!(event.event, "snapshot", "{event:?}");
        snapshots += 1;
        assert!(snapshots <= batches, "one snapshot per reset at most");
        if event.id.unwrap().parse::<FeedId>().unwrap() == last {
            // The fastest 20 of them all (the test's scores grow with the schedule id).
            assert_eq!(event.data["entries"][0]["rank"], 1);
            assert_eq!(event.data["entries"].as_array().unwrap().len(), 20);
            break;
        }
    }
    let next = harness.enqueue(1).await;
    assert_eq!(
        stream.entry().await.data["member"],
        members(&next)[0].as_str()
    );
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_reset_between_two_rows_of_one_transaction_leaves_neither_off_the_feed(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    use ranking_worker::log::LogPosition;
    use ranking_worker::relay::RelaySettings;

    let harness = Harness::new(database).await;
    let earlier = harness.enqueue(1).await;
    // One transaction of three rows, read by batches of two: the first goes with `earlier`.
    let rows = [
        crate::helpers::event(2),
        crate::helpers::event(3),
        crate::helpers::event(4),
    ];
    let mut tx = harness.pool.begin().await.unwrap();
    for row in &rows {
        shared::outbox::enqueue(&mut tx, row).await.unwrap();
    }
    tx.commit().await.unwrap();
    let positions: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT tx_id::text::bigint, seq FROM outbox ORDER BY tx_id::text::bigint, seq",
    )
    .fetch_all(&harness.pool)
    .await
    .unwrap();
    let feed_id = |(tx_id, seq): (i64, i64)| FeedId::from(LogPosition { tx_id, seq });
    let mut relay = harness.relay(RelaySettings {
        batch_size: 2,
        ..crate::helpers::settings()
    });
    harness.apply_at_least(&mut relay, 2).await;

    // A change no entry describes (a replay puts back an entry lost): the reset takes the next
    // ID of the transaction's.
    let mut redis = harness.redis.clone();
    redis::cmd("ZREM")
        .arg(&harness.key)
        .arg(ranking_worker::ranking::member(&earlier[0]))
        .exec_async(&mut redis)
        .await
        .unwrap();
    let all = ReplayFilter::default();
    let report = replay::replay(&harness.pool, &mut redis, &harness.ranking, &all, false)
        .await
        .unwrap();
    assert_eq!(report.restored, 1);
    let read_up_to = harness.ranking.feed_last(&mut redis).await.unwrap();
    assert_eq!(
        read_up_to,
        feed_id(positions[2]),
        "the reset holds the second row's position"
    );

    harness.drain(&mut relay).await;
    // A reader that read up to the reset learns of the second row: as an entry, or as a reset
    // that sends it to read the board again.
    let missed = harness
        .ranking
        .feed_after(&mut redis, read_up_to, 100)
        .await
        .unwrap();
    if let Some(missed) = missed {
        let members: Vec<_> = missed.iter().map(|a| a.entry.member.clone()).collect();
        assert!(
            members.contains(&ranking_worker::ranking::member(&rows[1])),
            "the second row is off the feed: {members:?}"
        );
    }
    // Applied again (Redis lost the position: a heal), the rows announce nothing more.
    let after_drain = harness.ranking.feed_last(&mut redis).await.unwrap();
    redis::cmd("DEL")
        .arg(harness.ranking.keys().position())
        .exec_async(&mut redis)
        .await
        .unwrap();
    assert!(harness.drain(&mut relay).await.resynced);
    assert_eq!(
        harness.ranking.feed_last(&mut redis).await.unwrap(),
        after_drain
    );
}
