//! The demo: several concerts open for sale at different moments, and crowds of different
//! sizes and speeds sell them out at once. The ranking then shows who sold out fastest.

use std::time::Duration;

use chrono::Utc;
use payment_svc::domain::Role;

use crate::api::{Api, Caller, NewSchedule, Tokens};
use crate::buyers::{sell_out, Sale};

struct Act {
    title: &'static str,
    seats: i64,
    buyers: usize,
    think_ms: u64,
    /// When the sale opens, counted from the demo's start.
    opens_after_ms: i64,
}

const LINEUP: [Act; 5] = [
    Act {
        title: "IU HEREH World Tour",
        seats: 40,
        buyers: 16,
        think_ms: 100,
        opens_after_ms: 2_000,
    },
    Act {
        title: "BTS Yet To Come",
        seats: 60,
        buyers: 8,
        think_ms: 200,
        opens_after_ms: 3_000,
    },
    Act {
        title: "NewJeans Bunnies Camp",
        seats: 30,
        buyers: 3,
        think_ms: 300,
        opens_after_ms: 1_000,
    },
    Act {
        title: "SEVENTEEN Follow",
        seats: 50,
        buyers: 4,
        think_ms: 150,
        opens_after_ms: 4_000,
    },
    Act {
        title: "Lim Young-woong IM HERO",
        seats: 20,
        buyers: 1,
        think_ms: 250,
        opens_after_ms: 1_500,
    },
];

pub async fn run(api: &Api, tokens: &Tokens) -> anyhow::Result<()> {
    let admin = tokens.caller(1, Role::Admin)?;
    // Fresh buyer ids each run, so runs never share balances.
    let first_buyer = rand::random::<u32>() as i64 + 1_000;
    let start = Utc::now();
    let mut sales = Vec::new();
    for (index, act) in LINEUP.iter().enumerate() {
        let schedule = NewSchedule {
            starts_at: start + chrono::Duration::days(30),
            sale_starts_at: start + chrono::Duration::milliseconds(act.opens_after_ms),
            seat_count: act.seats,
            price: 10_000,
        };
        let concert = api.create_concert(&admin, act.title, &[schedule]).await?;
        let buyers = (0..act.buyers)
            .map(|n| tokens.caller(first_buyer + (index * 100 + n) as i64, Role::User))
            .collect::<anyhow::Result<Vec<Caller>>>()?;
        println!(
            "concert {:>4}  {:<24} {:>3} seats, {:>10}, sale opens in {:.1} s",
            concert.concert_id,
            act.title,
            act.seats,
            plural(act.buyers, "buyer"),
            act.opens_after_ms as f64 / 1000.0
        );
        let sale = Sale {
            schedule: concert.schedules[0].clone(),
            buyers,
            think_time: Duration::from_millis(act.think_ms),
        };
        sales.push(async move {
            let sold = sell_out(api, sale).await?;
            let concert = api.concert(concert.concert_id).await?;
            let schedule = &concert.schedules[0];
            let took = schedule
                .sold_out_at
                .map(|at| (at - schedule.sale_starts_at).num_milliseconds() as f64 / 1000.0);
            println!(
                "sold out       {:<24} in {:>6.3} s ({} seats; {} held by another buyer first)",
                concert.title,
                took.unwrap_or(f64::NAN),
                sold.seats,
                plural(sold.collisions, "seat")
            );
            anyhow::Ok(())
        });
    }
    for result in futures::future::join_all(sales).await {
        result?;
    }
    Ok(())
}

fn plural(count: usize, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}
