//! Concurrent buyers that sell a schedule out through payment-svc, the way real users would:
//! they wait for the sale to open, pick seats at random, collide with each other, hold and pay.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use indexmap::IndexSet;
use rand::Rng;

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
    let unsold = Arc::new(Mutex::new(Unsold(
        (1..=schedule.seat_count).collect::<IndexSet<i64>>(),
    )));
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
    unsold: &Mutex<Unsold>,
    think_time: Duration,
) -> anyhow::Result<Sold> {
    if let Ok(wait) = (schedule.sale_starts_at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    let mut sold = Sold::default();
    loop {
        let seat = {
            let unsold = unsold.lock().expect("no buyer panics holding the lock");
            match unsold.pick() {
                Some(seat) => seat,
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
            .sold(seat);
        sold.seats += 1;
        sold.sold_out_responses += usize::from(payment.schedule_sold_out);
        tokio::time::sleep(think_time).await;
    }
}

/// The seats no buyer has paid for yet (some may be held), shared by all buyers.
///
/// Picking and removing are O(1): an ordered set made every pick walk half the seats, which at
/// 50,000 seats and 2,000 buyers kept the load generator's own cores busy instead of the
/// service's.
struct Unsold(IndexSet<i64>);

impl Unsold {
    /// A seat chosen uniformly at random, or `None` once every seat is sold.
    fn pick(&self) -> Option<i64> {
        if self.0.is_empty() {
            return None;
        }
        let index = rand::thread_rng().gen_range(0..self.0.len());
        self.0.get_index(index).copied()
    }

    fn sold(&mut self, seat: i64) {
        // Order does not matter to a random pick, so the O(1) removal will do.
        self.0.swap_remove(&seat);
    }
}

fn refused(what: &str, seat: i64, error: ApiError) -> anyhow::Error {
    anyhow::anyhow!("{what} of seat {seat} failed: {error}")
}
