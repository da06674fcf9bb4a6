//! Concurrent buyers that sell a schedule out through payment-svc, the way real users would:
//! they wait for the sale to open, pick seats at random, collide with each other, hold and pay.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rand::seq::IteratorRandom;

use crate::api::{Api, ApiError, Caller, Schedule};

/// How a schedule is sold.
pub struct Sale {
    pub schedule: Schedule,
    pub buyers: Vec<Caller>,
    /// Pause between one buyer's purchases: how slowly this crowd buys.
    pub think_time: Duration,
}

/// What happened while selling.
#[derive(Debug, Default)]
pub struct Sold {
    pub seats: usize,
    /// Payments whose response said they sold the schedule out: exactly one when correct.
    pub sold_out_responses: usize,
    /// Holds refused because another buyer had the seat first.
    pub collisions: usize,
}

/// Charges each buyer enough points, then runs them all until every seat is paid for.
pub async fn sell_out(api: &Api, sale: Sale) -> anyhow::Result<Sold> {
    let Sale {
        schedule,
        buyers,
        think_time,
    } = sale;
    let budget = (schedule.price * schedule.seat_count).clamp(1, 2_000_000);
    for buyer in &buyers {
        api.charge(buyer, budget).await?;
    }
    let unsold = Arc::new(Mutex::new(
        (1..=schedule.seat_count).collect::<BTreeSet<i64>>(),
    ));
    let runs = buyers.into_iter().map(|buyer| {
        let (api, schedule, unsold) = (api.clone(), schedule.clone(), unsold.clone());
        tokio::spawn(async move {
            buy_until_sold_out(&api, &buyer, &schedule, &unsold, think_time).await
        })
    });
    let mut total = Sold::default();
    for run in futures::future::join_all(runs).await {
        let sold = run??;
        total.seats += sold.seats;
        total.sold_out_responses += sold.sold_out_responses;
        total.collisions += sold.collisions;
    }
    Ok(total)
}

async fn buy_until_sold_out(
    api: &Api,
    buyer: &Caller,
    schedule: &Schedule,
    unsold: &Mutex<BTreeSet<i64>>,
    think_time: Duration,
) -> anyhow::Result<Sold> {
    if let Ok(wait) = (schedule.sale_starts_at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    let mut sold = Sold::default();
    loop {
        let seat = {
            let unsold = unsold.lock().expect("no buyer panics holding the lock");
            match unsold.iter().choose(&mut rand::thread_rng()) {
                Some(seat) => *seat,
                None => return Ok(sold),
            }
        };
        let reservation = match api.hold(buyer, schedule.schedule_id, seat).await {
            Ok(reservation) => reservation,
            // Someone else holds it; they will pay for it shortly. Try another seat.
            Err(error) if error.code() == Some("SEAT_UNAVAILABLE") => {
                sold.collisions += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            // Our clock ran a little ahead of the database's: the sale opens in a moment.
            Err(error) if error.code() == Some("SALE_NOT_OPEN") => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(error) => return Err(refused("hold", seat, error)),
        };
        let payment = api
            .pay(buyer, reservation.reservation_id)
            .await
            .map_err(|error| refused("payment", seat, error))?;
        unsold
            .lock()
            .expect("no buyer panics holding the lock")
            .remove(&seat);
        sold.seats += 1;
        sold.sold_out_responses += usize::from(payment.schedule_sold_out);
        tokio::time::sleep(think_time).await;
    }
}

fn refused(what: &str, seat: i64, error: ApiError) -> anyhow::Error {
    anyhow::anyhow!("{what} of seat {seat} failed: {error}")
}
