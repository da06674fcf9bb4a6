//! Confirming a payment: the one transaction that turns a hold into a sale (SPEC §1–2).
//!
//! In order: confirm the hold, deduct the balance, record the payment, count the seat on its
//! schedule, and, if that was the last seat, stamp `sold_out_at` and write `ConcertSoldOut` to
//! the outbox. All on the caller's transaction: if anything fails, none of it happened.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::events::ConcertSoldOut;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::UserId;
use crate::error::ApiError;

/// What the client is told about its payment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    pub payment_id: Uuid,
    pub reservation_id: Uuid,
    pub amount: i64,
    /// The payer's balance after this payment.
    pub balance: i64,
    /// Whether this payment sold the schedule's last seat.
    pub schedule_sold_out: bool,
}

#[derive(sqlx::FromRow)]
struct ConfirmedHold {
    schedule_id: i64,
    price: i64,
}

#[derive(sqlx::FromRow)]
struct CountedSeat {
    concert_id: i64,
    concert_title: String,
    seat_count: i32,
    sale_starts_at: DateTime<Utc>,
    sold_out_at: Option<DateTime<Utc>>,
}

pub async fn confirm_payment(
    tx: &mut PgConnection,
    user: UserId,
    reservation_id: Uuid,
) -> Result<Receipt, ApiError> {
    // 1. Lock the reservation, and only then judge it. The payment may have waited before
    //    this (for its Idempotency-Key) or here (for a competing payment of the same hold), and
    //    the hold may have expired meanwhile; `now()`, the transaction's start, predates both
    //    waits. Checking `clock_timestamp()` in the WHERE of an UPDATE that waited is not enough
    //    either: after the wait Postgres re-evaluates the WHERE only if the row changed, not if
    //    its holder rolled back. The lock also serialises this with a second payment of the
    //    same hold and with the hold being released or expired; whoever is second sees the
    //    first one's outcome.
    let status: Option<(String,)> = sqlx::query_as(
        "SELECT status FROM reservations WHERE id = $1 AND user_id = $2 FOR NO KEY UPDATE",
    )
    .bind(reservation_id)
    .bind(user.get())
    .fetch_optional(&mut *tx)
    .await?;
    match status.as_ref().map(|(status,)| status.as_str()) {
        None => return Err(ApiError::NotFound("reservation")),
        Some("HELD") => {}
        Some("CONFIRMED") => return Err(ApiError::ReservationNotHeld),
        Some(_) => return Err(ApiError::ReservationExpired),
    }
    // The lock is ours, so this statement waits for nothing: clock_timestamp() is the database
    // clock at the moment of payment (SPEC §3), and a hold past it stays unpaid.
    let hold: Option<ConfirmedHold> = sqlx::query_as(
        "UPDATE reservations SET status = 'CONFIRMED'
         WHERE id = $1 AND held_until > clock_timestamp()
         RETURNING schedule_id, price",
    )
    .bind(reservation_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(hold) = hold else {
        return Err(ApiError::ReservationExpired);
    };

    // 2. Deduct. The WHERE makes an overdraft match no row instead of failing the CHECK.
    let balance: Option<(i64,)> = sqlx::query_as(
        "UPDATE point_balances SET balance = balance - $2, updated_at = now()
         WHERE user_id = $1 AND balance >= $2
         RETURNING balance",
    )
    .bind(user.get())
    .bind(hold.price)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((balance,)) = balance else {
        let (balance,): (i64,) = sqlx::query_as(
            "SELECT COALESCE((SELECT balance FROM point_balances WHERE user_id = $1), 0)",
        )
        .bind(user.get())
        .fetch_one(&mut *tx)
        .await?;
        return Err(ApiError::InsufficientBalance {
            balance,
            price: hold.price,
        });
    };

    // 3. The payment; payments_one_per_reservation backs up step 1 against double payment.
    //    Stamped with the clock now, as step 1 judged the hold, not the transaction's start.
    let payment_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO payments (id, reservation_id, user_id, amount, created_at)
         VALUES ($1, $2, $3, $4, clock_timestamp())",
    )
    .bind(payment_id)
    .bind(reservation_id)
    .bind(user.get())
    .bind(hold.price)
    .execute(&mut *tx)
    .await?;

    // 4. Count the seat. The UPDATE locks the schedule row until commit, so concurrent payments
    //    of this schedule pass here one at a time and exactly one sees the count reach
    //    seat_count. It comes last so that hot row is locked for as short a time as possible.
    //    sold_out_at is the database clock at this moment, kept to the millisecond like the
    //    sale time it is compared with.
    let seat: CountedSeat = sqlx::query_as(
        "UPDATE schedules s
         SET confirmed_count = s.confirmed_count + 1,
             sold_out_at = CASE WHEN s.confirmed_count + 1 = s.seat_count
                                THEN date_trunc('milliseconds', clock_timestamp()) END
         FROM concerts c
         WHERE s.id = $1 AND c.id = s.concert_id
         RETURNING s.concert_id, c.title AS concert_title, s.seat_count, s.sale_starts_at, s.sold_out_at",
    )
    .bind(hold.schedule_id)
    .fetch_one(&mut *tx)
    .await?;

    // 5. The last seat: the event goes out with this transaction or not at all.
    if let Some(sold_out_at) = seat.sold_out_at {
        let event = ConcertSoldOut {
            event_id: Uuid::now_v7(),
            concert_id: seat.concert_id,
            schedule_id: hold.schedule_id,
            concert_title: seat.concert_title,
            seat_count: seat.seat_count,
            sale_started_at: seat.sale_starts_at,
            sold_out_at,
        };
        shared::outbox::enqueue(tx, &event).await?;
    }

    Ok(Receipt {
        payment_id,
        reservation_id,
        amount: hold.price,
        balance,
        schedule_sold_out: seat.sold_out_at.is_some(),
    })
}
