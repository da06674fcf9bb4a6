-- Found in review of the payment functions:
-- * booking_confirm_payment confirmed the hold before it checked the balance, so a refused
--   payment (INSUFFICIENT_BALANCE) returned with the hold already CONFIRMED; payment-svc rolls
--   refusals back, but a caller that commits (a psql session, a future job) kept a confirmed
--   seat nobody paid for. Now it judges the hold on the locked row, deducts, and only then
--   writes: every refusal writes nothing. Lock order is unchanged (reservation, balance,
--   counter row, schedule row).
-- * A payment whose seat had no counter row was counted nowhere, and its schedule could never
--   sell out; it now fails instead.
-- * idempotency_save updated no row without saying so when the key's row was missing; every
--   replay would then answer 500. It now fails the transaction.

CREATE OR REPLACE FUNCTION booking_confirm_payment(
    p_user bigint, p_reservation uuid, p_payment uuid,
    OUT outcome text, OUT amount bigint, OUT balance bigint, OUT schedule_id bigint,
    OUT concert_id bigint, OUT concert_title text, OUT seat_count integer,
    OUT sale_starts_at timestamptz, OUT sold_out_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_status text;
    v_schedule bigint;
    v_seat integer;
    v_price bigint;
    v_remaining integer;
    v_held_until timestamptz;
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
    SELECT r.status, r.held_until, r.schedule_id, r.seat_no, r.price
      INTO v_status, v_held_until, v_schedule, v_seat, v_price
      FROM reservations r
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
    -- The row is locked by us and read after any wait, so this is its current hold:
    -- clock_timestamp() is the database clock at the moment of payment (SPEC §3), and a hold
    -- past it stays unpaid.
    IF v_held_until <= clock_timestamp() THEN
        outcome := 'EXPIRED';
        RETURN;
    END IF;

    -- 2. Deduct, before anything is written: every refusal returns having written nothing,
    --    whatever its caller then does with the transaction. The WHERE makes an overdraft
    --    match no row instead of failing the CHECK.
    UPDATE point_balances b SET balance = b.balance - v_price, updated_at = now()
     WHERE b.user_id = p_user AND b.balance >= v_price
    RETURNING b.balance INTO balance;
    IF NOT FOUND THEN
        balance := COALESCE((SELECT b.balance FROM point_balances b WHERE b.user_id = p_user), 0);
        amount := v_price;
        outcome := 'INSUFFICIENT_BALANCE';
        RETURN;
    END IF;
    -- The reservation's lock is ours (step 1), so this waits for nothing.
    UPDATE reservations r SET status = 'CONFIRMED' WHERE r.id = p_reservation;

    -- 3. The payment; payments_one_per_reservation backs up step 1 against double payment.
    --    Stamped with the clock now, as step 1 judged the hold, not the transaction's start.
    INSERT INTO payments (id, reservation_id, user_id, amount, created_at)
    VALUES (p_payment, p_reservation, p_user, v_price, clock_timestamp());

    -- 4. Count the seat on its class's counter row. The row lock is held until commit, so the
    --    payments of one class pass here one at a time, and exactly one of them takes the row
    --    from 1 to 0: the class's emptier. Payments of other classes do not wait for it. It
    --    comes last so the row is locked for as short a time as possible. (Reading
    --    counter_slots from the schedule's row takes no lock on it: it never changes.)
    UPDATE schedule_seat_counters c SET remaining = c.remaining - 1
      FROM schedules s
     WHERE s.id = v_schedule AND c.schedule_id = s.id AND c.slot = (v_seat - 1) % s.counter_slots
    RETURNING c.remaining INTO v_remaining;
    IF NOT FOUND THEN
        -- A schedule without its counter rows would take payments uncounted and never sell
        -- out (no event, ever): refuse the payment instead.
        RAISE EXCEPTION 'schedule % has no seat counter row for seat %', v_schedule, v_seat
            USING ERRCODE = 'data_exception';
    END IF;

    -- 5. Only a class's emptier can have sold the last seat. It locks the schedule's row, then,
    --    in a separate statement, so with a snapshot taken after the lock was granted, looks
    --    for a class with seats left. If there is none, it stamps sold_out_at.
    --
    --    Why exactly one transaction stamps it. Seats are never unsold, so each class's row
    --    goes from 1 to 0 exactly once among the transactions that commit; call the committed
    --    transaction that did it that class's emptier. Emptiers hold their class's row lock
    --    from that decrement until they end, and take the schedule's row lock after it, also
    --    until they end, so the emptiers of one schedule hold the schedule's lock one after
    --    another. Let L be the one that takes it last.
    --    * Every other emptier E took the lock before L and ended before L was granted it;
    --      Postgres marks a transaction committed before it releases its locks, so L's next
    --      statement's snapshot sees E's decrement. L sees its own. So L sees every class at 0
    --      and stamps the sell-out.
    --    * Every other emptier E looked while holding the lock, before L was granted it, so
    --      before L committed: L's class still reads 1 in E's snapshot (L has not decremented
    --      it yet, or has but not committed), and E stamps nothing.
    --    A transaction that rolls back is no emptier: its decrement, its stamp and its event
    --    all go with it, its class reads 1 again, and the next payment of that class empties
    --    it and takes the lock after every earlier emptier ended. A single statement could not
    --    do this: rows other than the one it locked would be read from the snapshot taken
    --    before the lock wait, and two emptiers could each miss the other.
    --    The lock is FOR NO KEY UPDATE: holds check the schedule's row for their foreign key
    --    with FOR KEY SHARE, which it does not block. Lock order is the same for every
    --    payment (reservation, balance, class row, schedule row), and nothing that holds the
    --    schedule's row waits for a class row, so emptiers cannot deadlock.
    IF v_remaining = 0 THEN
        PERFORM 1 FROM schedules s WHERE s.id = v_schedule FOR NO KEY UPDATE;
        IF NOT EXISTS (SELECT 1 FROM schedule_seat_counters c
                        WHERE c.schedule_id = v_schedule AND c.remaining > 0) THEN
            -- sold_out_at is the database clock at this moment, kept to the millisecond like
            -- the sale time it is compared with. schedules_sold_out_when_full refuses a
            -- second stamp, and outbox_one_sold_out_per_schedule a second event.
            UPDATE schedules s
               SET sold_out_at = date_trunc('milliseconds', clock_timestamp())
              FROM concerts c
             WHERE s.id = v_schedule AND c.id = s.concert_id
            RETURNING s.concert_id, c.title, s.seat_count, s.sale_starts_at, s.sold_out_at
              INTO concert_id, concert_title, seat_count, sale_starts_at, sold_out_at;
        END IF;
    END IF;
    amount := v_price;
    schedule_id := v_schedule;
    outcome := 'PAID';
END
$$;

CREATE OR REPLACE FUNCTION idempotency_save(
    p_user bigint, p_endpoint text, p_key text, p_status smallint, p_bytes bytea)
RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- response_body as well, for instances of a version before response_bytes (see
    -- 20261125160000_idempotency_response_bytes.sql) during a rollout.
    UPDATE idempotency_keys
       SET response_status = p_status, response_bytes = p_bytes,
           response_body = convert_from(p_bytes, 'UTF8')::jsonb
     WHERE user_id = p_user AND endpoint = p_endpoint AND key = p_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no Idempotency-Key row for user %, % %: the response cannot be stored', p_user, p_endpoint, p_key
            USING ERRCODE = 'no_data_found';
    END IF;
END
$$;
