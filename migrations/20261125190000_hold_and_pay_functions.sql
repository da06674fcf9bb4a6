-- A hold and a payment each in one statement (issue 14: round trips).
--
-- Before, a hold took six statements (sale window, user lock, lazy expiry, my hold, live-hold
-- count, insert) and a payment's confirmation five (lock the hold, confirm it, deduct, insert
-- the payment, count the seat), each a round trip between payment-svc and Postgres. These
-- functions run the same statements, in the same transaction, inside the server.
--
-- They are plpgsql and VOLATILE on purpose: under READ COMMITTED every statement of a volatile
-- function takes a fresh snapshot, so a statement that follows a lock wait (the user's advisory
-- lock, a reservation's row lock, the schedule's row lock) sees every transaction that
-- committed before the lock was granted. One SQL statement (a data-modifying CTE) would read
-- every row but the locked one from the snapshot taken before the wait, and the hold cap and
-- the sell-out would be decided on stale counts. So the functions refuse to run at any other
-- isolation level: REPEATABLE READ would freeze the snapshot at the first statement.

CREATE FUNCTION booking_require_read_committed() RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'holds and payments need READ COMMITTED, this transaction is %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'feature_not_supported';
    END IF;
END
$$;

-- Holds a seat for p_user, or finds the hold p_user already has of it.
--
-- outcome: NO_SCHEDULE, NO_SEAT, SALE_NOT_OPEN, TOO_MANY_HOLDS (nothing written for any of
-- them), MINE (my live hold of this seat, unchanged), CREATED. A seat held or sold by someone
-- else fails the insert with reservations_one_live_per_seat, which rolls the statement back.
--
-- Meant to run as a statement of its own (autocommit): it writes only in its last two
-- statements, and an error in either undoes both.
CREATE FUNCTION booking_hold(
    p_user bigint, p_schedule bigint, p_seat integer, p_reservation uuid,
    p_ttl_seconds double precision, p_max_holds bigint,
    OUT outcome text, OUT reservation_id uuid, OUT schedule_id bigint, OUT seat_no integer,
    OUT price bigint, OUT status text, OUT held_until timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_seat_count integer;
    v_open boolean;
    v_live bigint;
BEGIN
    PERFORM booking_require_read_committed();
    -- The sale window by the database clock, the one every hold and payment is timed by.
    SELECT s.seat_count, s.sale_starts_at <= now() AND now() < s.starts_at
      INTO v_seat_count, v_open
      FROM schedules s WHERE s.id = p_schedule;
    IF NOT FOUND THEN
        outcome := 'NO_SCHEDULE';
        RETURN;
    END IF;
    IF p_seat > v_seat_count THEN
        outcome := 'NO_SEAT';
        RETURN;
    END IF;
    IF NOT v_open THEN
        outcome := 'SALE_NOT_OPEN';
        RETURN;
    END IF;

    -- One hold at a time per user: the cap below counts, then inserts, and two concurrent holds
    -- of one user would both count below it. A lock on the user, held until commit, makes the
    -- second wait; the statements after it take fresh snapshots (see the top of this file), so
    -- it counts the first. Users have no row to lock, so it is an advisory lock on a hash of
    -- the user id, prefixed so it shares no key with other advisory locks (such as
    -- ranking-worker's consumer locks); a collision only makes two users' holds take turns.
    -- Every statement after it reads the clock afresh (clock_timestamp()), as the wait may have
    -- been long.
    PERFORM pg_advisory_xact_lock(hashtextextended('holds of user ' || p_user, 0));

    -- My live hold of this seat: a retry that lost its response gets its hold back. A stale
    -- one of mine does not count: it is expired below like anyone's.
    SELECT r.id, r.schedule_id, r.seat_no, r.price, r.status, r.held_until
      INTO reservation_id, schedule_id, seat_no, price, status, held_until
      FROM reservations r
     WHERE r.schedule_id = p_schedule AND r.seat_no = p_seat AND r.user_id = p_user
       AND r.status = 'HELD' AND r.held_until > clock_timestamp();
    IF FOUND THEN
        outcome := 'MINE';
        RETURN;
    END IF;

    SELECT count(*) INTO v_live FROM reservations r
     WHERE r.user_id = p_user AND r.status = 'HELD' AND r.held_until > clock_timestamp();
    IF v_live >= p_max_holds THEN
        outcome := 'TOO_MANY_HOLDS';
        RETURN;
    END IF;

    -- Lazy expiry: a stale hold keeps its slot in reservations_one_live_per_seat until someone
    -- wants the seat. Flipping it here frees the slot for the insert below. The row lock this
    -- takes serialises with a concurrent payment of that hold: whichever is second sees the
    -- other's outcome. (It comes after the checks above so that a refused hold writes nothing.)
    UPDATE reservations r SET status = 'EXPIRED'
     WHERE r.schedule_id = p_schedule AND r.seat_no = p_seat AND r.status = 'HELD'
       AND r.held_until <= clock_timestamp();

    -- The unique index on live reservations decides races for the seat: the loser's insert
    -- fails with reservations_one_live_per_seat (payment-svc answers 409 SEAT_UNAVAILABLE).
    INSERT INTO reservations AS r (id, user_id, schedule_id, seat_no, price, status, held_until)
    SELECT p_reservation, p_user, s.id, p_seat, s.price, 'HELD',
           clock_timestamp() + make_interval(secs => p_ttl_seconds)
      FROM schedules s WHERE s.id = p_schedule
    RETURNING r.id, r.schedule_id, r.seat_no, r.price, r.status, r.held_until
      INTO reservation_id, schedule_id, seat_no, price, status, held_until;
    outcome := 'CREATED';
END
$$;

-- Confirms p_user's hold p_reservation as payment p_payment, on the caller's transaction
-- (payment-svc's, which also holds the request's Idempotency-Key and stores the response).
--
-- outcome: NOT_FOUND, NOT_HELD (already confirmed), EXPIRED, INSUFFICIENT_BALANCE (balance is
-- the payer's balance), or PAID. Any outcome but PAID may have written part of the payment:
-- the caller rolls back. On PAID with sold_out_at set, this payment sold the schedule's last
-- seat and the caller writes the ConcertSoldOut event (shared::outbox) before committing; the
-- concert_* and schedule_* columns are its payload.
CREATE FUNCTION booking_confirm_payment(
    p_user bigint, p_reservation uuid, p_payment uuid,
    OUT outcome text, OUT amount bigint, OUT balance bigint, OUT schedule_id bigint,
    OUT concert_id bigint, OUT concert_title text, OUT seat_count integer,
    OUT sale_starts_at timestamptz, OUT sold_out_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_status text;
    v_schedule bigint;
    v_price bigint;
BEGIN
    PERFORM booking_require_read_committed();
    -- 1. Lock the reservation, and only then judge it. The payment may have waited before
    --    this (for its Idempotency-Key) or here (for a competing payment of the same hold), and
    --    the hold may have expired meanwhile; now(), the transaction's start, predates both
    --    waits. Checking clock_timestamp() in the WHERE of an UPDATE that waited is not enough
    --    either: after the wait Postgres re-evaluates the WHERE only if the row changed, not if
    --    its holder rolled back. The lock also serialises this with a second payment of the
    --    same hold and with the hold being released or expired; whoever is second sees the
    --    first one's outcome.
    SELECT r.status INTO v_status FROM reservations r
     WHERE r.id = p_reservation AND r.user_id = p_user
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        outcome := 'NOT_FOUND';
        RETURN;
    ELSIF v_status = 'CONFIRMED' THEN
        outcome := 'NOT_HELD';
        RETURN;
    ELSIF v_status <> 'HELD' THEN
        outcome := 'EXPIRED';
        RETURN;
    END IF;
    -- The lock is ours, so this statement waits for nothing: clock_timestamp() is the database
    -- clock at the moment of payment (SPEC §3), and a hold past it stays unpaid.
    UPDATE reservations r SET status = 'CONFIRMED'
     WHERE r.id = p_reservation AND r.held_until > clock_timestamp()
    RETURNING r.schedule_id, r.price INTO v_schedule, v_price;
    IF NOT FOUND THEN
        outcome := 'EXPIRED';
        RETURN;
    END IF;

    -- 2. Deduct. The WHERE makes an overdraft match no row instead of failing the CHECK.
    UPDATE point_balances b SET balance = b.balance - v_price, updated_at = now()
     WHERE b.user_id = p_user AND b.balance >= v_price
    RETURNING b.balance INTO balance;
    IF NOT FOUND THEN
        balance := COALESCE((SELECT b.balance FROM point_balances b WHERE b.user_id = p_user), 0);
        amount := v_price;
        outcome := 'INSUFFICIENT_BALANCE';
        RETURN;
    END IF;

    -- 3. The payment; payments_one_per_reservation backs up step 1 against double payment.
    --    Stamped with the clock now, as step 1 judged the hold, not the transaction's start.
    INSERT INTO payments (id, reservation_id, user_id, amount, created_at)
    VALUES (p_payment, p_reservation, p_user, v_price, clock_timestamp());

    -- 4. Count the seat. The UPDATE locks the schedule row until commit, so concurrent payments
    --    of this schedule pass here one at a time and exactly one sees the count reach
    --    seat_count. It comes last so that hot row is locked for as short a time as possible.
    --    sold_out_at is the database clock at this moment, kept to the millisecond like the
    --    sale time it is compared with.
    UPDATE schedules s
       SET confirmed_count = s.confirmed_count + 1,
           sold_out_at = CASE WHEN s.confirmed_count + 1 = s.seat_count
                              THEN date_trunc('milliseconds', clock_timestamp()) END
      FROM concerts c
     WHERE s.id = v_schedule AND c.id = s.concert_id
    RETURNING s.concert_id, c.title, s.seat_count, s.sale_starts_at, s.sold_out_at
      INTO concert_id, concert_title, seat_count, sale_starts_at, sold_out_at;
    amount := v_price;
    schedule_id := v_schedule;
    outcome := 'PAID';
END
$$;
