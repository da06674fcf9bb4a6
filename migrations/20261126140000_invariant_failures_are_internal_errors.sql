-- Found in review, two things about booking_confirm_payment's invariants.
--
-- 1. When no counter row of the schedule has seats left for a payment, the counts disagree
--    with the seats: an internal invariant failed, not the client's input. The function
--    raised it as data_exception (class 22), which payment-svc's error mapping reports as
--    422 VALIDATION_FAILED ("a value is outside what the service can store"). It now raises
--    internal_error (XX000): a 500, with the message in the service's error log. The function
--    is otherwise as in 20261126110400_count_on_a_free_counter_row.sql.
--
-- 2. A schedule stored with sold_out_at set while it has unsold seats could never sell its
--    last seat: that payment's stamp is an update of sold_out_at, which
--    schedules_sold_out_when_full refuses once it is set, so every such payment would fail, a
--    500 forever. Only a row inserted by hand before 20261126110200 (which now refuses such
--    inserts) can be like this. The migration stops loudly if one exists rather than guess
--    whether the stamp or the counts are wrong: a person has to decide, and fix the row.
DO $$
DECLARE
    stuck bigint;
BEGIN
    SELECT count(*) INTO stuck FROM schedules s
     WHERE s.sold_out_at IS NOT NULL
       AND EXISTS (SELECT 1 FROM schedule_seat_counters c
                    WHERE c.schedule_id = s.id AND c.remaining > 0);
    IF stuck > 0 THEN
        RAISE EXCEPTION '% schedules have sold_out_at set and unsold seats: their last seat could never be paid; clear sold_out_at or correct the counters, then migrate again', stuck;
    END IF;
END
$$;

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
    v_class integer;
    v_slot integer;
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

    -- 4. Count the seat on a counter row with seats left, the seat's own class's if it is
    --    free, else any other that no payment in flight has locked (SKIP LOCKED), else, when
    --    every row with seats left is locked, whichever frees first. The row lock is held
    --    until commit, and the payment that takes a row from 1 to 0 is that row's emptier.
    --    The counts stay right whichever row is used: each payment decrements one row by one,
    --    for a seat no other payment in flight or committed holds (step 1 locked its HELD
    --    reservation, and reservations_one_live_per_seat lets no seat be confirmed twice), so
    --    the committed and in-flight decrements number fewer than the seats, the rows' sum,
    --    and a row with seats left always exists for this payment. The loop ends: a pass that
    --    finds no row waited for a payment in flight to end, and there are finitely many.
    --    Before, the row was the seat's class's, always: in a rush of 20 payments in flight on
    --    64 rows, a payment found its row locked by another about a third of the time and
    --    waited for that one's commit (1.0 of the 1.8 ms a payment spent in Postgres during
    --    the 50,000-seat rush).
    v_class := (v_seat - 1) % (SELECT s.counter_slots FROM schedules s WHERE s.id = v_schedule);
    LOOP
        SELECT c.slot INTO v_slot FROM schedule_seat_counters c
         WHERE c.schedule_id = v_schedule AND c.slot >= v_class AND c.remaining > 0
         ORDER BY c.slot LIMIT 1
           FOR NO KEY UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            SELECT c.slot INTO v_slot FROM schedule_seat_counters c
             WHERE c.schedule_id = v_schedule AND c.slot < v_class AND c.remaining > 0
             ORDER BY c.slot LIMIT 1
               FOR NO KEY UPDATE SKIP LOCKED;
        END IF;
        IF NOT FOUND THEN
            -- Every row with seats left is locked by a payment in flight: wait for one. After
            -- the wait, Postgres checks remaining > 0 again on the row as its holder left it.
            SELECT c.slot INTO v_slot FROM schedule_seat_counters c
             WHERE c.schedule_id = v_schedule AND c.remaining > 0
             ORDER BY c.slot LIMIT 1
               FOR NO KEY UPDATE;
        END IF;
        EXIT WHEN FOUND;
        -- Each row this pass saw with seats left was emptied by a payment it waited for. A
        -- fresh snapshot shows the rows as committed; if none has seats left, the counts
        -- disagree with the seats (or the rows are missing), and the schedule could never
        -- sell out (no event, ever): refuse the payment instead of counting it nowhere.
        IF NOT EXISTS (SELECT 1 FROM schedule_seat_counters c
                        WHERE c.schedule_id = v_schedule AND c.remaining > 0) THEN
            RAISE EXCEPTION 'schedule % has no seat counter row with seats left for seat %',
                v_schedule, v_seat
                USING ERRCODE = 'internal_error';
        END IF;
    END LOOP;
    -- The row is locked by us and its remaining was checked on its latest version.
    UPDATE schedule_seat_counters c SET remaining = c.remaining - 1
     WHERE c.schedule_id = v_schedule AND c.slot = v_slot
    RETURNING c.remaining INTO v_remaining;

    -- 5. Only a row's emptier can have sold the last seat. It locks the schedule's row, then,
    --    in a separate statement, so with a snapshot taken after the lock was granted, looks
    --    for a row with seats left. If there is none, it stamps sold_out_at.
    --
    --    Why exactly one transaction stamps it. Seats are never unsold and counts never grow,
    --    so each counter row goes from 1 to 0 at most once among the transactions that
    --    commit; call the committed transaction that did it that row's emptier. Every row of
    --    a sold-out schedule has one, as its committed decrements number its seats, the rows'
    --    sum. Emptiers hold their row's lock from that decrement until they end, and take the
    --    schedule's row lock after it, also until they end, so the emptiers of one schedule
    --    hold the schedule's lock one after another. Let L be the one that takes it last.
    --    * Every other emptier E took the lock before L and ended before L was granted it;
    --      Postgres marks a transaction committed before it releases its locks, so L's next
    --      statement's snapshot sees E's decrement. L sees its own. So L sees every row at 0
    --      and stamps the sell-out.
    --    * Every other emptier E looked while holding the lock, before L was granted it, so
    --      before L committed: L's row still reads 1 in E's snapshot (L has not decremented
    --      it yet, or has but not committed), and E stamps nothing.
    --    A transaction that rolls back is no emptier: its decrement, its stamp and its event
    --    all go with it, its row reads 1 again, and a later payment empties
    --    it and takes the lock after every earlier emptier ended. A single statement could not
    --    do this: rows other than the one it locked would be read from the snapshot taken
    --    before the lock wait, and two emptiers could each miss the other.
    --    The lock is FOR NO KEY UPDATE: holds check the schedule's row for their foreign key
    --    with FOR KEY SHARE, which it does not block. Lock order is the same for every
    --    payment (reservation, balance, counter row, schedule row); a payment waits for a
    --    counter row only while it holds none, and nothing that holds the schedule's row
    --    waits for a counter row, so payments cannot deadlock.
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
