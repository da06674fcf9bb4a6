-- A schedule's paid seats counted on several rows, so a rush on one schedule is not serialised
-- on one row lock (issue 14: the rush).
--
-- Before, every payment of a schedule did `confirmed_count = confirmed_count + 1` on the
-- schedule's row and held that row's lock until it committed: the payments of one schedule
-- committed one after another. Now a schedule's seats are split into `counter_slots` classes,
-- seat n in class (n - 1) % counter_slots, each with a row in schedule_seat_counters counting
-- the seats of that class still unsold. A payment decrements its seat's row only; payments of
-- seats in different classes take different row locks and commit side by side.
--
-- The sell-out is still decided by exactly one transaction; the argument is written beside the
-- SQL that decides it, in booking_confirm_payment below.

ALTER TABLE schedules ADD COLUMN counter_slots integer;

-- Seats unsold per class. capacity is the number of seats in the class, fixed at creation.
CREATE TABLE schedule_seat_counters (
    schedule_id bigint  NOT NULL CONSTRAINT schedule_seat_counters_schedule_fkey REFERENCES schedules (id),
    slot        integer NOT NULL,
    capacity    integer NOT NULL CONSTRAINT schedule_seat_counters_capacity_positive CHECK (capacity > 0),
    -- No seat is sold twice (reservations_one_live_per_seat, payments_one_per_reservation), so
    -- a class never sells more seats than it has; this CHECK turns a bug that would oversell
    -- into a failed payment instead.
    remaining   integer NOT NULL,
    CONSTRAINT schedule_seat_counters_pkey PRIMARY KEY (schedule_id, slot),
    CONSTRAINT schedule_seat_counters_remaining_in_range CHECK (remaining BETWEEN 0 AND capacity)
);

-- How many classes a new schedule gets, and its counter rows. 64 classes spread the payments
-- of the service's pool (20 connections by default) over rows they rarely share; a schedule
-- with fewer seats gets one class per seat, so every class has at least one seat and every
-- counter row is emptied by exactly one payment.
CREATE FUNCTION schedule_counters_create() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO schedule_seat_counters (schedule_id, slot, capacity, remaining)
    SELECT NEW.id, slot, (NEW.seat_count - 1 - slot) / NEW.counter_slots + 1,
           (NEW.seat_count - 1 - slot) / NEW.counter_slots + 1
      FROM generate_series(0, NEW.counter_slots - 1) AS slot;
    RETURN NULL;
END
$$;

CREATE FUNCTION schedule_counter_slots_default() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.counter_slots := COALESCE(NEW.counter_slots, least(64, NEW.seat_count));
    RETURN NEW;
END
$$;

-- Existing schedules: the same classes, with the seats their confirmed reservations hold
-- already counted. The confirmed count that was kept must agree, or the migration stops.
UPDATE schedules SET counter_slots = least(64, seat_count);
INSERT INTO schedule_seat_counters (schedule_id, slot, capacity, remaining)
SELECT s.id, slot, (s.seat_count - 1 - slot) / s.counter_slots + 1,
       (s.seat_count - 1 - slot) / s.counter_slots + 1
       - (SELECT count(*) FROM reservations r
           WHERE r.schedule_id = s.id AND r.status = 'CONFIRMED'
             AND (r.seat_no - 1) % s.counter_slots = slot)
  FROM schedules s, generate_series(0, s.counter_slots - 1) AS slot;
DO $$
DECLARE
    disagreeing bigint;
BEGIN
    SELECT count(*) INTO disagreeing FROM schedules s
     WHERE s.confirmed_count <> (SELECT sum(c.capacity - c.remaining)
                                   FROM schedule_seat_counters c WHERE c.schedule_id = s.id);
    IF disagreeing > 0 THEN
        RAISE EXCEPTION '% schedules have a confirmed_count other than their confirmed reservations', disagreeing;
    END IF;
END
$$;

ALTER TABLE schedules
    ALTER COLUMN counter_slots SET NOT NULL,
    ADD CONSTRAINT schedules_counter_slots_range CHECK (counter_slots BETWEEN 1 AND seat_count),
    DROP CONSTRAINT schedules_sold_out_when_full,
    DROP CONSTRAINT schedules_confirmed_in_range,
    DROP COLUMN confirmed_count;

CREATE TRIGGER schedule_counter_slots_default
    BEFORE INSERT ON schedules
    FOR EACH ROW EXECUTE FUNCTION schedule_counter_slots_default();
CREATE TRIGGER schedule_counters_create
    AFTER INSERT ON schedules
    FOR EACH ROW EXECUTE FUNCTION schedule_counters_create();

-- What schedules_sold_out_when_full said, now across two tables: sold_out_at is set only when
-- every counter row is empty, in the transaction's view when it sets it, and never changes
-- after. It runs only on the statement that stamps the sell-out, once per schedule.
CREATE FUNCTION schedule_sold_out_when_full() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.sold_out_at IS NOT NULL THEN
        RAISE EXCEPTION 'schedule % sold out at %: that does not change', OLD.id, OLD.sold_out_at
            USING ERRCODE = 'check_violation', CONSTRAINT = 'schedules_sold_out_when_full';
    END IF;
    IF NEW.sold_out_at IS NOT NULL AND EXISTS (
        SELECT 1 FROM schedule_seat_counters c WHERE c.schedule_id = NEW.id AND c.remaining > 0
    ) THEN
        RAISE EXCEPTION 'schedule % has unsold seats: it cannot be sold out', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'schedules_sold_out_when_full';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER schedules_sold_out_when_full
    BEFORE UPDATE OF sold_out_at ON schedules
    FOR EACH ROW WHEN (NEW.sold_out_at IS DISTINCT FROM OLD.sold_out_at)
    EXECUTE FUNCTION schedule_sold_out_when_full();

-- booking_confirm_payment as in 20261125190000_hold_and_pay_functions.sql, steps 1 to 3
-- unchanged; step 4 counts the seat on its class's row.
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
    RETURNING r.schedule_id, r.seat_no, r.price INTO v_schedule, v_seat, v_price;
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

    -- 4. Count the seat on its class's counter row. The row lock is held until commit, so the
    --    payments of one class pass here one at a time, and exactly one of them takes the row
    --    from 1 to 0: the class's emptier. Payments of other classes do not wait for it. It
    --    comes last so the row is locked for as short a time as possible. (Reading
    --    counter_slots from the schedule's row takes no lock on it: it never changes.)
    UPDATE schedule_seat_counters c SET remaining = c.remaining - 1
      FROM schedules s
     WHERE s.id = v_schedule AND c.schedule_id = s.id AND c.slot = (v_seat - 1) % s.counter_slots
    RETURNING c.remaining INTO v_remaining;

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
