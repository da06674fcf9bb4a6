//! Schedules sold before their seats were counted on counter rows keep their counts: the
//! migration that adds the rows fills them from the confirmed reservations, and refuses a
//! schedule whose kept count disagrees with them.

use std::borrow::Cow;

use sqlx::migrate::Migrator;
use sqlx::PgPool;

const COUNTER_MIGRATION: i64 = 20261125191000;

#[sqlx::test(migrations = false)]
async fn existing_schedules_get_counter_rows_that_match_their_sales(pool: PgPool) {
    let before = Migrator {
        migrations: Cow::Owned(
            shared::MIGRATOR
                .iter()
                .filter(|m| m.version < COUNTER_MIGRATION)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    };
    before.run(&pool).await.unwrap();

    // Schedule 1: 100 seats (64 counter rows: seats 1 and 65 share row 0), seats 1, 65 and
    // 2 sold, seat 3 held. Schedule 2: 3 seats, all sold, sold out.
    sqlx::raw_sql(
        "INSERT INTO concerts (title) VALUES ('Before the counters');
         INSERT INTO schedules (concert_id, starts_at, sale_starts_at, seat_count, price,
                                confirmed_count, sold_out_at)
         VALUES (1, now() + interval '1 day', now() - interval '1 day', 100, 10, 3, NULL),
                (1, now() + interval '1 day', now() - interval '1 day', 3, 10, 3, now());
         INSERT INTO reservations (id, user_id, schedule_id, seat_no, price, status, held_until)
         SELECT gen_random_uuid(), 1, schedule_id, seat_no, 10, status, now()
         FROM (VALUES (1, 1, 'CONFIRMED'), (1, 65, 'CONFIRMED'), (1, 2, 'CONFIRMED'),
                      (1, 3, 'HELD'), (2, 1, 'CONFIRMED'), (2, 2, 'CONFIRMED'),
                      (2, 3, 'CONFIRMED')) AS r(schedule_id, seat_no, status);
         UPDATE schedules SET confirmed_count = 2 WHERE id = 1;",
    )
    .execute(&pool)
    .await
    .unwrap();

    // The kept count (2) disagrees with the confirmed reservations (3): nothing migrates.
    let refused = shared::MIGRATOR.run(&pool).await.unwrap_err();
    assert!(refused.to_string().contains("confirmed_count"), "{refused}");
    let counters: bool = sqlx::query_scalar("SELECT to_regclass('schedule_seat_counters') IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(counters, "the failed migration left nothing behind");

    sqlx::query("UPDATE schedules SET confirmed_count = 3 WHERE id = 1")
        .execute(&pool)
        .await
        .unwrap();
    shared::MIGRATOR.run(&pool).await.unwrap();

    let rows: Vec<(i64, i32, i32, i32)> = sqlx::query_as(
        "SELECT schedule_id, slot, capacity, remaining FROM schedule_seat_counters
         WHERE (schedule_id = 1 AND slot < 4) OR schedule_id = 2
         ORDER BY schedule_id, slot",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (1, 0, 2, 0),
            (1, 1, 2, 1),
            (1, 2, 2, 2),
            (1, 3, 2, 2),
            (2, 0, 1, 0),
            (2, 1, 1, 0),
            (2, 2, 1, 0),
        ]
    );
    let (slots, capacity, remaining): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), sum(capacity), sum(remaining) FROM schedule_seat_counters
         WHERE schedule_id = 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((slots, capacity, remaining), (64, 100, 97));
}
