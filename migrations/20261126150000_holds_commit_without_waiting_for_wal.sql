-- A hold's commit no longer waits for its WAL to reach the disk (issue 14: one WAL flush per
-- sold seat).
--
-- A hold and a payment each committed synchronously: two WAL flushes per sold seat, and the
-- profile of the payments and rush benchmarks put 75-85 % of the active sessions' wait samples
-- in the commit's flush. POST /reservations now calls booking_hold_request, which turns
-- synchronous_commit off for its own transaction only (set_config's third argument, true: a
-- SET LOCAL, undone when the transaction ends, so it never reaches the next statement on the
-- pooled connection) and then holds exactly as booking_hold does. Postgres reads the setting
-- when the commit begins, so an autocommit statement calling this function commits
-- asynchronously: it is visible to everyone at once, and durable once the WAL writer (every
-- wal_writer_delay, 200 ms by default; at most three times that) or any later synchronous
-- commit has flushed the WAL past it. payment-svc's test
-- a_hold_commits_without_waiting_for_the_wal_and_a_payment_waits checks both settings at
-- commit time.
--
-- Why that is safe here; every write a hold makes is in booking_hold, whose last two
-- statements are the only ones that write:
-- * Money moves only in the payment (booking_pay_request), which stays synchronous. WAL is
--   written and replayed in order, and a hold's commit record is in the WAL before any other
--   transaction can see the hold, so a payment of the hold (or anything else that read it and
--   commits synchronously) flushes the hold with its own commit: no payment, balance change,
--   payment row, counter row or outbox event can survive a crash that the hold it depends on
--   did not. The Postgres documentation says the same of asynchronous commit in general: it
--   risks loss of the last transactions, never inconsistency.
-- * What a crash (of Postgres or its machine, not of payment-svc) can lose is holds
--   acknowledged within the last ~3 x wal_writer_delay and not yet paid, released or built
--   upon by a synchronous commit. For the seat that is the same as the hold expiring early: it
--   is back in the pool, nobody was charged, and the holder's payment is refused (the
--   reservation is unknown: 404 NOT_FOUND, where an expired hold gives 409
--   RESERVATION_EXPIRED); a new hold of the seat works. The lazy expiry of another user's stale
--   hold, lost with it, leaves that hold HELD but past held_until, which every reader already
--   treats as expired. The per-user cap counts live HELD rows, so a lost hold stops counting
--   with it.
-- * Nothing outside Postgres learns of a hold: it writes no outbox row and no NOTIFY (only the
--   payment that sells out does), so no event, webhook or ranking in Redis can refer to a hold
--   that a crash took back. POST /reservations takes no Idempotency-Key, so there is no stored
--   response to lose (a retried hold of a seat I hold already returns my hold, and after a
--   crash that lost it, holds the seat anew). Only the client's 201, payment-svc's log line and
--   its in-process metrics have seen it.
--
-- Call it as a statement of its own, as payment-svc does: the setting holds for the whole
-- transaction, so a caller's explicit transaction (a payment in it, say) would commit
-- asynchronously too. It overrides a synchronous_commit of remote_write or remote_apply as
-- well, by design: with a synchronous standby, a failover loses at most the same recent,
-- unpaid holds. booking_hold itself is unchanged, and still commits as the session says, for
-- instances of the previous version during a rollout.
CREATE FUNCTION booking_hold_request(
    p_user bigint, p_schedule bigint, p_seat integer, p_reservation uuid,
    p_ttl_seconds double precision, p_max_holds bigint,
    OUT outcome text, OUT reservation_id uuid, OUT schedule_id bigint, OUT seat_no integer,
    OUT price bigint, OUT status text, OUT held_until timestamptz)
LANGUAGE sql VOLATILE AS $$
    SELECT set_config('synchronous_commit', 'off', true);
    SELECT * FROM booking_hold(p_user, p_schedule, p_seat, p_reservation, p_ttl_seconds,
                               p_max_holds);
$$;
