-- no-transaction
--
-- The cap on live holds (booking_hold counts the user's HELD, unexpired reservations) read
-- every reservation the user ever made through reservations_user_id_id_idx and filtered them:
-- in the payments benchmark, whose buyers have thousands of paid seats, the count took a
-- quarter of a hold's time in Postgres (0.11 of 0.46 ms), and it grows with the user's history.
-- This index holds HELD rows only, by user and expiry, so the count reads the user's unexpired
-- holds and nothing else. A hold adds an entry; paying or expiring it writes a row version
-- outside the index, so it costs those nothing.
--
-- Built CONCURRENTLY (hence outside a transaction) so that holds and payments go on while it
-- is built over a large reservations table.
CREATE INDEX CONCURRENTLY IF NOT EXISTS reservations_live_holds_by_user
    ON reservations (user_id, held_until)
    WHERE status = 'HELD';
