//! `sell-out`: one new concert whose single schedule a small crowd sells out through
//! payment-svc, for scripts that need a real sell-out (the live board's browser test).

use std::time::Duration;

use chrono::Utc;
use payment_svc::domain::Role;

use crate::api::{Api, NewSchedule, Tokens};
use crate::buyers::{sell_out, Sale};

#[derive(Debug, clap::Args)]
pub struct SellOutArgs {
    /// The concert's title.
    #[arg(long)]
    title: String,

    /// Seats of its one schedule.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    seats: i64,

    /// How long before now the sale opened, so the sell-out time ranks it (seconds, ms precision).
    #[arg(long, default_value_t = 60.0)]
    opened_seconds_ago: f64,

    /// The first buyer's user id; each sell-out needs its own buyers when points matter.
    #[arg(long, default_value_t = 1_000)]
    first_buyer: i64,
}

pub async fn run(api: &Api, tokens: &Tokens, args: SellOutArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.opened_seconds_ago.is_finite() && (0.0..=86_400.0).contains(&args.opened_seconds_ago),
        "--opened-seconds-ago must be between 0 and 86400, got {}",
        args.opened_seconds_ago
    );
    let admin = tokens.caller(1, Role::Admin)?;
    let now = Utc::now();
    let schedule = NewSchedule {
        starts_at: now + chrono::Duration::days(30),
        sale_starts_at: now
            - chrono::Duration::milliseconds((args.opened_seconds_ago * 1000.0).round() as i64),
        seat_count: args.seats,
        price: 10_000,
    };
    let concert = api.create_concert(&admin, &args.title, &[schedule]).await?;
    let buyers = (0..2)
        .map(|n| tokens.caller(args.first_buyer + n, Role::User))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sold = sell_out(
        api,
        Sale {
            schedule: concert.schedules[0].clone(),
            buyers,
            think_time: Duration::ZERO,
        },
    )
    .await?;
    anyhow::ensure!(
        sold.sold_out_responses == 1,
        "{} payments said they sold the schedule out; exactly one should",
        sold.sold_out_responses
    );
    println!(
        "sold out  concert {} schedule {}  {:?} ({} seats)",
        concert.concert_id, concert.schedules[0].schedule_id, args.title, sold.seats
    );
    Ok(())
}
