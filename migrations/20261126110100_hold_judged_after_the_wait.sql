-- booking_hold, found in review and in the rush's profile (issue 14):
-- * The sale window was judged by now(), the transaction's start, before the wait for the
--   user's lock: a hold that waited across sale_starts_at was refused although the sale had
--   opened, and one that waited across starts_at was let in. It is now judged by
--   clock_timestamp() after the wait, like everything else the function decides.
-- * A seat held or sold by someone else was refused by the failed insert: a reservation row
--   written, an index entry refused, a transaction id spent and rolled back, for what is the
--   most common outcome of a rush (most buyers ask for seats others already hold). The seat's
--   live reservation is now read first, and a seat that has one is refused before anything is
--   written, with the same error the insert gives (unique_violation on
--   reservations_one_live_per_seat, 409 SEAT_UNAVAILABLE), so instances of the previous
--   version read it as they did. The unique index still decides the races this read cannot
--   see (a hold of the seat not yet committed): the insert fails as before.
-- Outcomes and signature are unchanged.

CREATE OR REPLACE FUNCTION booking_hold(
    p_user bigint, p_schedule bigint, p_seat integer, p_reservation uuid,
    p_ttl_seconds double precision, p_max_holds bigint,
    OUT outcome text, OUT reservation_id uuid, OUT schedule_id bigint, OUT seat_no integer,
    OUT price bigint, OUT status text, OUT held_until timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_seat_count integer;
    v_sale_starts_at timestamptz;
    v_starts_at timestamptz;
    v_live bigint;
    v_seat record;
    v_seat_taken boolean;
BEGIN
    PERFORM booking_require_read_committed();
    SELECT s.seat_count, s.sale_starts_at, s.starts_at
      INTO v_seat_count, v_sale_starts_at, v_starts_at
      FROM schedules s WHERE s.id = p_schedule;
    IF NOT FOUND THEN
        outcome := 'NO_SCHEDULE';
        RETURN;
    END IF;
    IF p_seat > v_seat_count THEN
        outcome := 'NO_SEAT';
        RETURN;
    END IF;

    -- One hold at a time per user: the cap below counts, then inserts, and two concurrent holds
    -- of one user would both count below it. A lock on the user, held until commit, makes the
    -- second wait; the statements after it take fresh snapshots (a volatile function under
    -- READ COMMITTED), so it counts the first. Users have no row to lock, so it is an advisory
    -- lock on a hash of the user id, prefixed so it shares no key with other advisory locks
    -- (such as ranking-worker's consumer locks); a collision only makes two users' holds take
    -- turns. Every decision after it reads the clock afresh (clock_timestamp()), as the wait
    -- may have been long.
    PERFORM pg_advisory_xact_lock(hashtextextended('holds of user ' || p_user, 0));

    -- The sale window by the database clock, the one every hold and payment is timed by, read
    -- after the wait. (The schedule's times never change, so the row read above still holds.)
    IF NOT (v_sale_starts_at <= clock_timestamp() AND clock_timestamp() < v_starts_at) THEN
        outcome := 'SALE_NOT_OPEN';
        RETURN;
    END IF;

    -- The seat's reservation that holds its slot in reservations_one_live_per_seat, if any:
    -- at most one row, found through that index.
    SELECT r.id, r.user_id, r.schedule_id, r.seat_no, r.price, r.status, r.held_until,
           r.status = 'CONFIRMED' OR r.held_until > clock_timestamp() AS live
      INTO v_seat
      FROM reservations r
     WHERE r.schedule_id = p_schedule AND r.seat_no = p_seat
       AND r.status IN ('HELD', 'CONFIRMED');
    v_seat_taken := FOUND AND v_seat.live;
    -- My live hold of this seat: a retry that lost its response gets its hold back. A stale
    -- one of mine does not count: it is expired below like anyone's.
    IF v_seat_taken AND v_seat.status = 'HELD' AND v_seat.user_id = p_user THEN
        reservation_id := v_seat.id;
        schedule_id := v_seat.schedule_id;
        seat_no := v_seat.seat_no;
        price := v_seat.price;
        status := v_seat.status;
        held_until := v_seat.held_until;
        outcome := 'MINE';
        RETURN;
    END IF;

    SELECT count(*) INTO v_live FROM reservations r
     WHERE r.user_id = p_user AND r.status = 'HELD' AND r.held_until > clock_timestamp();
    IF v_live >= p_max_holds THEN
        outcome := 'TOO_MANY_HOLDS';
        RETURN;
    END IF;

    -- Held by someone else, or sold: refused before anything is written (see the top).
    IF v_seat_taken THEN
        RAISE EXCEPTION 'seat % of schedule % is held or sold', p_seat, p_schedule
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'reservations_one_live_per_seat';
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
