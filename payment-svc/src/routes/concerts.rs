//! Concerts and their schedules: created by admins, listed by anyone.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Admin;
use crate::domain::{NewConcert, RawSchedule, Timestamp};
use crate::error::ApiError;
use crate::extract::{JsonBody, Path, Query};
use crate::openapi;
use crate::routes::page;
use crate::state::AppState;

/// Concerts and their seats: browsing for everyone, creation for admins.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/concerts", post(create))
        .route("/concerts", get(list))
        .route("/concerts/{concert_id}", get(show))
        .route("/schedules/{schedule_id}/seats", get(seats))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConcert {
    /// 1 to 200 characters, not blank, without control characters or bidi embeddings,
    /// overrides and isolates (U+202A..U+202E, U+2066..U+2069).
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    #[schema(min_items = 1, max_items = 100)]
    schedules: Vec<CreateSchedule>,
}

/// `sale_starts_at` must be before `starts_at`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    starts_at: Timestamp,
    sale_starts_at: Timestamp,
    #[serde(deserialize_with = "crate::extract::whole_number")]
    #[schema(minimum = 1, maximum = 100_000)]
    seat_count: i64,
    /// Per seat, in KRW.
    #[serde(deserialize_with = "crate::extract::whole_number")]
    #[schema(minimum = 1, maximum = 10_000_000)]
    price: i64,
}

/// A schedule (one performance). Times are kept to the millisecond.
#[derive(Serialize, ToSchema)]
pub struct Schedule {
    schedule_id: i64,
    starts_at: DateTime<Utc>,
    sale_starts_at: DateTime<Utc>,
    seat_count: i32,
    price: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedConcert {
    concert_id: i64,
    title: String,
    /// In the order they were sent.
    schedules: Vec<Schedule>,
}

/// Creates a concert with its schedules (admin).
#[utoipa::path(
    post,
    path = "/admin/concerts",
    tag = "concerts",
    security(("bearer" = [])),
    request_body = CreateConcert,
    responses(
        (status = 201, description = "Created", body = CreatedConcert),
        openapi::Malformed,
        openapi::AdminOnly,
        openapi::BodyErrors,
        openapi::Always,
    )
)]
pub async fn create(
    _admin: Admin,
    State(state): State<AppState>,
    JsonBody { value: body, .. }: JsonBody<CreateConcert>,
) -> Result<(StatusCode, Json<CreatedConcert>), ApiError> {
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
    let concert_id = sqlx::query_scalar!(
        "INSERT INTO concerts (title) VALUES ($1) RETURNING id",
        concert.title()
    )
    .fetch_one(&mut *tx)
    .await?;
    let schedules = concert.schedules();
    let starts_at: Vec<_> = schedules.iter().map(|s| s.starts_at()).collect();
    let sale_starts_at: Vec<_> = schedules.iter().map(|s| s.sale_starts_at()).collect();
    let seat_counts: Vec<_> = schedules.iter().map(|s| s.seat_count()).collect();
    let prices: Vec<_> = schedules.iter().map(|s| s.price()).collect();
    // One statement for all schedules; WITH ORDINALITY keeps the request's order.
    let created = sqlx::query_as!(
        Schedule,
        r#"INSERT INTO schedules (concert_id, starts_at, sale_starts_at, seat_count, price)
           SELECT $1, s.starts_at, s.sale_starts_at, s.seat_count, s.price
           FROM UNNEST($2::timestamptz[], $3::timestamptz[], $4::int[], $5::bigint[])
                WITH ORDINALITY AS s(starts_at, sale_starts_at, seat_count, price, ord)
           ORDER BY s.ord
           RETURNING id AS schedule_id, starts_at, sale_starts_at, seat_count, price"#,
        concert_id,
        &starts_at,
        &sale_starts_at,
        &seat_counts,
        &prices
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    Ok((
        StatusCode::CREATED,
        Json(CreatedConcert {
            concert_id,
            title: concert.title().to_owned(),
            schedules: created,
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// Cursor: list concerts with an id greater than this (the previous page's `next_after`).
    after: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ConcertSummary {
    concert_id: i64,
    title: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConcertPage {
    /// By id, ascending.
    concerts: Vec<ConcertSummary>,
    /// Pass as `after` for the next page; null when this page is not full.
    #[schema(required = true)]
    next_after: Option<i64>,
}

/// Lists concerts.
#[utoipa::path(
    get,
    path = "/concerts",
    tag = "concerts",
    params(ListParams),
    responses(
        (status = 200, description = "A page of concerts", body = ConcertPage),
        openapi::Malformed,
        openapi::Always,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<ConcertPage>, ApiError> {
    let limit = page::LIST.limit(params.limit)?;
    let concerts = sqlx::query_as!(
        ConcertSummary,
        "SELECT id AS concert_id, title FROM concerts WHERE id > $1 ORDER BY id LIMIT $2",
        params.after.unwrap_or(0),
        limit
    )
    .fetch_all(&state.pool)
    .await?;
    let next_after = page::next_after(&concerts, limit, |c| c.concert_id);
    Ok(Json(ConcertPage {
        concerts,
        next_after,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleDetail {
    #[serde(flatten)]
    schedule: Schedule,
    /// Seats neither paid nor held.
    available_seats: i64,
    /// When the last seat was paid (database clock); null until then.
    #[schema(required = true)]
    sold_out_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct ConcertDetail {
    concert_id: i64,
    title: String,
    schedules: Vec<ScheduleDetail>,
}

/// Shows a concert with its schedules.
#[utoipa::path(
    get,
    path = "/concerts/{concert_id}",
    tag = "concerts",
    params(("concert_id" = i64, Path, description = "The concert's id")),
    responses(
        (status = 200, description = "The concert", body = ConcertDetail),
        openapi::Malformed,
        openapi::NotFound,
        openapi::Always,
    )
)]
pub async fn show(
    State(state): State<AppState>,
    Path(concert_id): Path<i64>,
) -> Result<Json<ConcertDetail>, ApiError> {
    let title = sqlx::query_scalar!("SELECT title FROM concerts WHERE id = $1", concert_id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or(ApiError::NotFound("concert"))?;
    // Available = seats with no live reservation: neither paid nor held and unexpired.
    let schedules = sqlx::query!(
        r#"SELECT s.id AS schedule_id, s.starts_at, s.sale_starts_at, s.seat_count, s.price, s.sold_out_at,
                  s.seat_count - (SELECT count(*) FROM reservations r
                                  WHERE r.schedule_id = s.id
                                    AND (r.status = 'CONFIRMED' OR (r.status = 'HELD' AND r.held_until > now())))
                    AS "available_seats!"
           FROM schedules s WHERE s.concert_id = $1 ORDER BY s.id"#,
        concert_id
    )
    .fetch_all(&state.pool)
    .await?
    .into_iter()
    .map(|row| ScheduleDetail {
        schedule: Schedule {
            schedule_id: row.schedule_id,
            starts_at: row.starts_at,
            sale_starts_at: row.sale_starts_at,
            seat_count: row.seat_count,
            price: row.price,
        },
        available_seats: row.available_seats,
        sold_out_at: row.sold_out_at,
    })
    .collect();
    Ok(Json(ConcertDetail {
        concert_id,
        title,
        schedules,
    }))
}

/// A schedule has up to 100,000 seats: a page holds at most 1,000 (SPEC §3).
const SEAT_PAGE: page::PageSize = page::PageSize {
    default: 100,
    max: 1_000,
};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeatParams {
    /// Page size.
    #[param(minimum = 1, maximum = 1_000, default = 100)]
    limit: Option<i64>,
    /// Cursor: list seats numbered above this (the previous page's `next_after`).
    #[param(minimum = 0)]
    after: Option<i32>,
}

/// A seat's status, derived from its live reservation.
#[derive(Serialize, sqlx::Type, ToSchema)]
#[sqlx(type_name = "text", rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum SeatStatus {
    Available,
    Held,
    Sold,
}

#[derive(Serialize, ToSchema)]
pub struct Seat {
    seat_no: i32,
    price: i64,
    status: SeatStatus,
}

#[derive(Serialize, ToSchema)]
pub struct SeatPage {
    schedule_id: i64,
    /// By seat number, ascending.
    seats: Vec<Seat>,
    /// Pass as `after` for the next page; null after the schedule's last seat.
    #[schema(required = true)]
    next_after: Option<i32>,
}

/// Lists a schedule's seats with their status, a page at a time.
#[utoipa::path(
    get,
    path = "/schedules/{schedule_id}/seats",
    tag = "concerts",
    params(("schedule_id" = i64, Path, description = "The schedule's id"), SeatParams),
    responses(
        (status = 200, description = "A page of seats", body = SeatPage),
        openapi::Malformed,
        openapi::NotFound,
        openapi::Always,
    )
)]
pub async fn seats(
    State(state): State<AppState>,
    Path(schedule_id): Path<i64>,
    Query(params): Query<SeatParams>,
) -> Result<Json<SeatPage>, ApiError> {
    let limit = SEAT_PAGE.limit(params.limit)?;
    let after = params.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::malformed(format!(
            "after must be a seat number or 0, got {after}"
        )));
    }
    let schedule = sqlx::query!(
        "SELECT seat_count, price FROM schedules WHERE id = $1",
        schedule_id
    )
    .fetch_optional(&state.pool)
    .await?
    .ok_or(ApiError::NotFound("schedule"))?;
    let (seat_count, price) = (schedule.seat_count, schedule.price);
    // The page is seats after+1 ..= last; last is at most seat_count, so it fits an i32.
    let last = (i64::from(after) + limit).min(i64::from(seat_count)) as i32;
    let seats: Vec<Seat> = if after < last {
        // Seats are implicit (see the migration): number this page's and derive each status
        // from the seat's live reservation, if any, found by reservations_one_live_per_seat.
        sqlx::query_as!(
            Seat,
            r#"SELECT n.seat_no AS "seat_no!", $4::bigint AS "price!",
                      CASE WHEN r.status = 'CONFIRMED' THEN 'SOLD'
                           WHEN r.status = 'HELD' AND r.held_until > now() THEN 'HELD'
                           ELSE 'AVAILABLE' END AS "status!: SeatStatus"
               FROM generate_series($2::int, $3::int) AS n(seat_no)
               LEFT JOIN reservations r
                      ON r.schedule_id = $1 AND r.seat_no = n.seat_no
                     AND r.status IN ('HELD', 'CONFIRMED')
               ORDER BY n.seat_no"#,
            schedule_id,
            after + 1,
            last,
            price
        )
        .fetch_all(&state.pool)
        .await?
    } else {
        Vec::new()
    };
    let next_after = (after < last && last < seat_count).then_some(last);
    Ok(Json(SeatPage {
        schedule_id,
        seats,
        next_after,
    }))
}
