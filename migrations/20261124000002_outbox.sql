-- The transactional outbox (SPEC §4): events written in the same transaction as the state
-- change they describe, relayed to Redis by ranking-worker.

CREATE TABLE outbox (
    event_id        uuid        CONSTRAINT outbox_pkey PRIMARY KEY,
    event_type      text        NOT NULL,
    -- Payload schema version, so a consumer can refuse a version it does not understand.
    event_version   integer     NOT NULL,
    -- The entity the event is about; for ConcertSoldOut, the schedule id.
    aggregate_id    bigint      NOT NULL,
    payload         jsonb       NOT NULL,
    -- When the producing transaction wrote the row (its commit follows within milliseconds):
    -- the start of the commit-to-applied lag.
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Relay state. PENDING rows are due at next_attempt_at (now, or a retry's backoff).
    -- PROCESSING rows are leased to one worker and next_attempt_at is the lease's expiry: if the
    -- worker dies, the row falls due again and any worker reclaims it. One column for both keeps
    -- the claim a single range scan of one index. PROCESSED rows are kept for replay until
    -- pruned; DEAD rows exhausted their attempts and wait for an operator.
    status          text        NOT NULL DEFAULT 'PENDING'
                                CONSTRAINT outbox_status_known CHECK (status IN ('PENDING', 'PROCESSING', 'PROCESSED', 'DEAD')),
    -- Claims so far, counting the one in progress; MAX_ATTEMPTS of them and the row is DEAD.
    attempts        integer     NOT NULL DEFAULT 0 CONSTRAINT outbox_attempts_not_negative CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Which claim holds a PROCESSING row. A worker acks or fails only rows still carrying its
    -- token, so one whose lease expired and was reclaimed cannot overwrite the new holder's state.
    claim_token     uuid,
    last_error      text,
    processed_at    timestamptz,
    CONSTRAINT outbox_processed_has_time CHECK ((status = 'PROCESSED') = (processed_at IS NOT NULL))
);

-- At most one ConcertSoldOut per schedule: even if the sell-out detection were wrong, a second
-- event would abort its payment transaction instead of double-counting the schedule.
CREATE UNIQUE INDEX outbox_one_sold_out_per_schedule
    ON outbox (aggregate_id)
    WHERE event_type = 'ConcertSoldOut';

-- The claim query scans only rows that still need work. Processed rows are kept for replay and
-- would dominate a full index; a partial index keeps the claim's cost independent of history.
CREATE INDEX outbox_unfinished_by_due_time
    ON outbox (next_attempt_at)
    WHERE status IN ('PENDING', 'PROCESSING');

-- Replay filters processed events by creation time.
CREATE INDEX outbox_processed_by_created_at
    ON outbox (created_at)
    WHERE status = 'PROCESSED';
