-- Concerts, schedules, seat holds, points and payments (SPEC §2).
--
-- Every constraint is named: payment-svc maps constraint names to API errors, and a
-- violation in the logs then says which rule broke.

CREATE TABLE concerts (
    id         bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT concerts_pkey PRIMARY KEY,
    title      text        NOT NULL CONSTRAINT concerts_title_length CHECK (char_length(title) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE schedules (
    id              bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT schedules_pkey PRIMARY KEY,
    concert_id      bigint      NOT NULL CONSTRAINT schedules_concert_fkey REFERENCES concerts (id),
    starts_at       timestamptz NOT NULL,
    sale_starts_at  timestamptz NOT NULL,
    seat_count      integer     NOT NULL CONSTRAINT schedules_seat_count_range CHECK (seat_count BETWEEN 1 AND 100000),
    price           bigint      NOT NULL CONSTRAINT schedules_price_range CHECK (price BETWEEN 1 AND 10000000),
    -- Paid seats, maintained by the payment transaction with one atomic
    -- `confirmed_count = confirmed_count + 1 ... RETURNING`. The row lock that UPDATE takes
    -- serialises concurrent payments of one schedule, so exactly one of them sees the count
    -- reach seat_count. Counting CONFIRMED reservations instead is the seed report's bug: two
    -- READ COMMITTED transactions paying the last two seats cannot see each other's rows.
    confirmed_count integer     NOT NULL DEFAULT 0,
    -- Set from the database clock by the payment that sells the last seat, never by a client.
    sold_out_at     timestamptz,
    CONSTRAINT schedules_sale_before_start CHECK (sale_starts_at < starts_at),
    CONSTRAINT schedules_confirmed_in_range CHECK (confirmed_count BETWEEN 0 AND seat_count),
    -- Sold out exactly when every seat is paid: the counter and the timestamp cannot disagree.
    CONSTRAINT schedules_sold_out_when_full CHECK ((sold_out_at IS NOT NULL) = (confirmed_count = seat_count))
);
CREATE INDEX schedules_concert_id_idx ON schedules (concert_id);

-- Seats are not stored one row each: a schedule may have 100,000 seats and a concert 100
-- schedules. A seat (schedule_id, seat_no) with 1 <= seat_no <= seat_count exists implicitly and
-- its status is derived from its live reservation: SOLD if one is CONFIRMED, HELD if one is HELD
-- and unexpired, AVAILABLE otherwise.
CREATE TABLE reservations (
    id          uuid        CONSTRAINT reservations_pkey PRIMARY KEY,
    user_id     bigint      NOT NULL CONSTRAINT reservations_user_id_positive CHECK (user_id > 0),
    schedule_id bigint      NOT NULL CONSTRAINT reservations_schedule_fkey REFERENCES schedules (id),
    seat_no     integer     NOT NULL CONSTRAINT reservations_seat_no_positive CHECK (seat_no > 0),
    -- The price at hold time: what the payment charges.
    price       bigint      NOT NULL,
    status      text        NOT NULL CONSTRAINT reservations_status_known CHECK (status IN ('HELD', 'CONFIRMED', 'EXPIRED')),
    held_until  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- At most one live reservation per seat: this index is what makes "no seat sold twice" and
-- "no seat held twice" true under any concurrency. An expired hold still says HELD until someone
-- else wants the seat: holding first flips expired HELD rows of that seat to EXPIRED (lazy expiry).
CREATE UNIQUE INDEX reservations_one_live_per_seat
    ON reservations (schedule_id, seat_no)
    WHERE status IN ('HELD', 'CONFIRMED');
CREATE INDEX reservations_user_id_idx ON reservations (user_id);

CREATE TABLE point_balances (
    user_id    bigint      CONSTRAINT point_balances_pkey PRIMARY KEY,
    -- The last line of defence: the payment deducts with `WHERE balance >= amount`, and this
    -- CHECK makes any other path that would overdraw fail rather than go negative.
    balance    bigint      NOT NULL CONSTRAINT point_balances_not_negative CHECK (balance >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every charge is kept, so money can be audited: for every user,
-- sum(charges) = balance + sum(payments).
CREATE TABLE point_charges (
    id         uuid        CONSTRAINT point_charges_pkey PRIMARY KEY,
    user_id    bigint      NOT NULL,
    amount     bigint      NOT NULL CONSTRAINT point_charges_amount_range CHECK (amount BETWEEN 1 AND 2000000),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX point_charges_user_id_idx ON point_charges (user_id);

CREATE TABLE payments (
    id             uuid        CONSTRAINT payments_pkey PRIMARY KEY,
    -- One payment per reservation, whatever the client retries.
    reservation_id uuid        NOT NULL CONSTRAINT payments_one_per_reservation UNIQUE
                               CONSTRAINT payments_reservation_fkey REFERENCES reservations (id),
    user_id        bigint      NOT NULL,
    amount         bigint      NOT NULL CONSTRAINT payments_amount_positive CHECK (amount > 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_user_id_idx ON payments (user_id);

-- Responses of the money endpoints, replayed when a client retries with the same key.
-- Only successful responses are stored, in the same transaction as the effect they describe,
-- so a row exists exactly when the effect happened. A concurrent duplicate blocks on the primary
-- key until the first request's transaction ends, then replays its response.
CREATE TABLE idempotency_keys (
    user_id         bigint      NOT NULL,
    endpoint        text        NOT NULL,
    key             text        NOT NULL,
    -- SHA-256 of the request body: the same key with another body is refused.
    request_hash    bytea       NOT NULL,
    -- Written by the same transaction that inserted the row, before it commits; NULL only
    -- while that transaction is in flight, when no other transaction can see the row.
    response_status smallint,
    response_body   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (user_id, endpoint, key)
);
