//! Concerts and their schedules: created by admins, listed by anyone.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::Admin;
use crate::domain::{NewConcert, RawSchedule, Timestamp};
use crate::error::ApiError;
use crate::extract::{JsonBody, Path, Query};
use crate::routes::page;
use crate::startup::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConcert {
    title: String,
    schedules: Vec<CreateSchedule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    starts_at: Timestamp,
    sale_starts_at: Timestamp,
    seat_count: i64,
    price: i64,
}

#[derive(Serialize, sqlx::FromRow)]
pub struct Schedule {
    schedule_id: i64,
    starts_at: DateTime<Utc>,
    sale_starts_at: DateTime<Utc>,
    seat_count: i32,
    price: i64,
}

pub async fn create(
    _admin: Admin,
    State(state): State<AppState>,
    JsonBody { value: body, .. }: JsonBody<CreateConcert>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let raw = body
        .schedules
        .into_iter()
        .map(|s| RawSchedule {
            starts_at: s.starts_at.get(),
            sale_starts_at: s.sale_starts_at.get(),
            seat_count: s.seat_count,
            price: s.price,
        })
        .collect();
    let concert = NewConcert::parse(body.title, raw).map_err(ApiError::Validation)?;

    let mut tx = crate::db::begin(&state.pool).await?;
    let (concert_id,): (i64,) =
        sqlx::query_as("INSERT INTO concerts (title) VALUES ($1) RETURNING id")
            .bind(concert.title())
            .fetch_one(&mut *tx)
            .await?;
    let schedules = concert.schedules();
    // One statement for all schedules; WITH ORDINALITY keeps the request's order.
    let created: Vec<Schedule> = sqlx::query_as(
        "INSERT INTO schedules (concert_id, starts_at, sale_starts_at, seat_count, price)
         SELECT $1, s.starts_at, s.sale_starts_at, s.seat_count, s.price
         FROM UNNEST($2::timestamptz[], $3::timestamptz[], $4::int[], $5::bigint[])
              WITH ORDINALITY AS s(starts_at, sale_starts_at, seat_count, price, ord)
         ORDER BY s.ord
         RETURNING id AS schedule_id, starts_at, sale_starts_at, seat_count, price",
    )
    .bind(concert_id)
    .bind(schedules.iter().map(|s| s.starts_at()).collect::<Vec<_>>())
    .bind(
        schedules
            .iter()
            .map(|s| s.sale_starts_at())
            .collect::<Vec<_>>(),
    )
    .bind(schedules.iter().map(|s| s.seat_count()).collect::<Vec<_>>())
    .bind(schedules.iter().map(|s| s.price()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    Ok((
        StatusCode::CREATED,
        Json(json!({ "concert_id": concert_id, "title": concert.title(), "schedules": created })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<i64>,
    /// Cursor: list concerts with an id greater than this.
    after: Option<i64>,
}

#[derive(Serialize, sqlx::FromRow)]
struct ConcertSummary {
    concert_id: i64,
    title: String,
}

pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = page::LIST.limit(params.limit)?;
    let concerts: Vec<ConcertSummary> = sqlx::query_as(
        "SELECT id AS concert_id, title FROM concerts WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(params.after.unwrap_or(0))
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    let next_after = page::next_after(&concerts, limit, |c| c.concert_id);
    Ok(Json(
        json!({ "concerts": concerts, "next_after": next_after }),
    ))
}

#[derive(Serialize, sqlx::FromRow)]
struct ScheduleDetail {
    #[serde(flatten)]
    #[sqlx(flatten)]
    schedule: Schedule,
    available_seats: i64,
    sold_out_at: Option<DateTime<Utc>>,
}

pub async fn show(
    State(state): State<AppState>,
    Path(concert_id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let title: Option<(String,)> = sqlx::query_as("SELECT title FROM concerts WHERE id = $1")
        .bind(concert_id)
        .fetch_optional(&state.pool)
        .await?;
    let (title,) = title.ok_or(ApiError::NotFound("concert"))?;
    // Available = seats with no live reservation: neither paid nor held and unexpired.
    let schedules: Vec<ScheduleDetail> = sqlx::query_as(
        "SELECT s.id AS schedule_id, s.starts_at, s.sale_starts_at, s.seat_count, s.price, s.sold_out_at,
                s.seat_count - (SELECT count(*) FROM reservations r
                                WHERE r.schedule_id = s.id
                                  AND (r.status = 'CONFIRMED' OR (r.status = 'HELD' AND r.held_until > now())))
                  AS available_seats
         FROM schedules s WHERE s.concert_id = $1 ORDER BY s.id",
    )
    .bind(concert_id)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(
        json!({ "concert_id": concert_id, "title": title, "schedules": schedules }),
    ))
}

/// A schedule has up to 100,000 seats: a page holds at most 1,000 (SPEC §3).
const SEAT_PAGE: page::PageSize = page::PageSize {
    default: 100,
    max: 1_000,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeatParams {
    limit: Option<i64>,
    /// Cursor: list seats numbered above this.
    after: Option<i32>,
}

#[derive(Serialize, sqlx::FromRow)]
struct Seat {
    seat_no: i32,
    price: i64,
    status: String,
}

pub async fn seats(
    State(state): State<AppState>,
    Path(schedule_id): Path<i64>,
    Query(params): Query<SeatParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = SEAT_PAGE.limit(params.limit)?;
    let after = params.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::malformed(format!(
            "after must be a seat number or 0, got {after}"
        )));
    }
    let schedule: Option<(i32, i64)> =
        sqlx::query_as("SELECT seat_count, price FROM schedules WHERE id = $1")
            .bind(schedule_id)
            .fetch_optional(&state.pool)
            .await?;
    let (seat_count, price) = schedule.ok_or(ApiError::NotFound("schedule"))?;
    // The page is seats after+1 ..= last; last is at most seat_count, so it fits an i32.
    let last = (i64::from(after) + limit).min(i64::from(seat_count)) as i32;
    let seats: Vec<Seat> = if after < last {
        // Seats are implicit (see the migration): number this page's and derive each status
        // from the seat's live reservation, if any, found by reservations_one_live_per_seat.
        sqlx::query_as(
            "SELECT n.seat_no, $4::bigint AS price,
                    CASE WHEN r.status = 'CONFIRMED' THEN 'SOLD'
                         WHEN r.status = 'HELD' AND r.held_until > now() THEN 'HELD'
                         ELSE 'AVAILABLE' END AS status
             FROM generate_series($2::int, $3::int) AS n(seat_no)
             LEFT JOIN reservations r
                    ON r.schedule_id = $1 AND r.seat_no = n.seat_no
                   AND r.status IN ('HELD', 'CONFIRMED')
             ORDER BY n.seat_no",
        )
        .bind(schedule_id)
        .bind(after + 1)
        .bind(last)
        .bind(price)
        .fetch_all(&state.pool)
        .await?
    } else {
        Vec::new()
    };
    let next_after = (after < last && last < seat_count).then_some(last);
    Ok(Json(
        json!({ "schedule_id": schedule_id, "seats": seats, "next_after": next_after }),
    ))
}
