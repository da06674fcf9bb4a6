//! The end-to-end check: sell schedules out through payment-svc's HTTP API, then read the
//! ranking through ranking-worker's HTTP API and compare it with what the sales recorded.
//!
//! It only adds data, and judges only its own schedules, so it runs against a deployment that
//! already holds other concerts and rankings.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::Utc;
use payment_svc::domain::Role;

use crate::api::{Api, Concert, NewSchedule, RankingEntry, Tokens};
use crate::buyers::{sell_out, Sale};

/// How long the worker may take to show every sold-out schedule.
const RANKING_DEADLINE: Duration = Duration::from_secs(30);

/// (title, [(seats, sale started this many seconds ago; negative: opens in the future)]).
const CONCERTS: [(&str, &[(i64, i64)]); 3] = [
    ("Check: two schedules", &[(4, 600), (6, 45)]),
    ("Check: opened an hour ago", &[(5, 3_600)]),
    ("Check: opens in a second", &[(3, -1)]),
];

/// A sold-out schedule and the score the ranking must give it.
struct Expected {
    member: String,
    concert: Concert,
    schedule_index: usize,
    score_millis: i64,
}

pub async fn run(api: &Api, tokens: &Tokens) -> anyhow::Result<()> {
    let admin = tokens.caller(1, Role::Admin)?;
    let first_buyer = rand::random::<u32>() as i64 + 1_000;
    let now = Utc::now();
    let (mut sales, mut concert_ids) = (Vec::new(), Vec::new());
    for (index, (title, schedules)) in CONCERTS.iter().enumerate() {
        let planned: Vec<NewSchedule> = schedules
            .iter()
            .map(|&(seats, started_ago)| NewSchedule {
                starts_at: now + chrono::Duration::days(30),
                sale_starts_at: now - chrono::Duration::seconds(started_ago),
                seat_count: seats,
                price: 1_000,
            })
            .collect();
        let concert = api.create_concert(&admin, title, &planned).await?;
        concert_ids.push(concert.concert_id);
        for (n, schedule) in concert.schedules.iter().enumerate() {
            let buyers = (0..3)
                .map(|b| tokens.caller(first_buyer + (index * 100 + n * 10 + b) as i64, Role::User))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let sale = Sale {
                schedule: schedule.clone(),
                buyers,
                think_time: Duration::ZERO,
            };
            let schedule_id = schedule.schedule_id;
            sales.push(async move { (schedule_id, sell_out(api, sale).await) });
        }
    }
    for (schedule_id, sold) in futures::future::join_all(sales).await {
        let sold = sold.with_context(|| format!("selling schedule {schedule_id}"))?;
        ensure!(
            sold.sold_out_responses == 1,
            "schedule {schedule_id}: {} payments said they sold it out, expected exactly 1",
            sold.sold_out_responses
        );
    }

    let expected = recorded_sell_outs(api, &concert_ids).await?;
    let ranking = wait_for_ranking(api, &expected).await?;
    judge(&expected, &ranking)?;
    for want in &expected {
        let entry = &ranking[&want.member];
        println!(
            "ok  rank {:>4}  {:<24}  {:>10.3} s  {}",
            entry.rank, want.member, entry.sold_out_seconds, want.concert.title
        );
    }
    println!(
        "end-to-end check passed: {} schedules sold out over HTTP, each ranked once with its exact score",
        expected.len()
    );
    Ok(())
}

/// Reads back each sold-out schedule of the check's concerts from payment-svc.
async fn recorded_sell_outs(api: &Api, concert_ids: &[i64]) -> anyhow::Result<Vec<Expected>> {
    let mut expected = Vec::new();
    for &concert_id in concert_ids {
        let concert = api.concert(concert_id).await?;
        for (index, schedule) in concert.schedules.iter().enumerate() {
            let sold_out_at = schedule.sold_out_at.with_context(|| {
                format!(
                    "schedule {} has no sold_out_at after selling every seat",
                    schedule.schedule_id
                )
            })?;
            expected.push(Expected {
                member: format!(
                    "concert:{}:schedule:{}",
                    concert.concert_id, schedule.schedule_id
                ),
                score_millis: (sold_out_at - schedule.sale_starts_at).num_milliseconds(),
                concert: concert.clone(),
                schedule_index: index,
            });
        }
    }
    Ok(expected)
}

/// Polls the ranking until every expected member is in it.
async fn wait_for_ranking(
    api: &Api,
    expected: &[Expected],
) -> anyhow::Result<HashMap<String, RankingEntry>> {
    let started = Instant::now();
    loop {
        let ranking: HashMap<String, RankingEntry> = api
            .ranking()
            .await?
            .into_iter()
            .map(|entry| (entry.member.clone(), entry))
            .collect();
        let missing: Vec<&str> = expected
            .iter()
            .filter(|want| !ranking.contains_key(&want.member))
            .map(|want| want.member.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(ranking);
        }
        if started.elapsed() > RANKING_DEADLINE {
            bail!("after {RANKING_DEADLINE:?} the ranking still lacks {missing:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Member format, exact scores, details, and order.
fn judge(expected: &[Expected], ranking: &HashMap<String, RankingEntry>) -> anyhow::Result<()> {
    for want in expected {
        let entry = &ranking[&want.member];
        let schedule = &want.concert.schedules[want.schedule_index];
        ensure!(
            entry.concert_id == want.concert.concert_id
                && entry.schedule_id == schedule.schedule_id,
            "{}: entry names concert {} schedule {}",
            want.member,
            entry.concert_id,
            entry.schedule_id
        );
        let score_millis = (entry.sold_out_seconds * 1000.0).round() as i64;
        ensure!(
            score_millis == want.score_millis,
            "{}: score {} s, but sold_out_at − sale_starts_at = {} ms",
            want.member,
            entry.sold_out_seconds,
            want.score_millis
        );
        ensure!(
            entry.concert_title.as_deref() == Some(want.concert.title.as_str())
                && entry.sale_started_at == Some(schedule.sale_starts_at)
                && entry.sold_out_at == schedule.sold_out_at,
            "{}: details {entry:?} differ from the concert's {:?}",
            want.member,
            want.concert
        );
    }
    // Fastest first: ranks follow the scores (ties broken by member, as Redis orders them).
    let mut by_rank: Vec<&RankingEntry> =
        expected.iter().map(|want| &ranking[&want.member]).collect();
    by_rank.sort_by_key(|entry| entry.rank);
    for pair in by_rank.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        ensure!(
            (a.sold_out_seconds, &a.member) < (b.sold_out_seconds, &b.member),
            "{} (rank {}, {} s) is ranked before {} (rank {}, {} s)",
            a.member,
            a.rank,
            a.sold_out_seconds,
            b.member,
            b.rank,
            b.sold_out_seconds
        );
    }
    Ok(())
}
