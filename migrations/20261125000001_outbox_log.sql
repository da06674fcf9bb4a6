-- The outbox becomes an append-only log read by consumers, each owning its position (SPEC §4).
--
-- Before, the relay's state lived in each row (status, attempts, lease): two non-HOT updates
-- per event, and the sink's progress was not stored with the sink, so a Redis that lost data
-- was never repaired. Now rows are never updated. A consumer reads rows after its position in
-- position order; the ranking stores its position in Redis with its effect, and Postgres keeps
-- a mirror of every consumer's position for status, lag and pruning.
--
-- Old workers must be stopped before this runs. A payment-svc of the previous version keeps
-- working during a rollout: it inserts only the columns that remain, and the new ones have
-- defaults.

-- The log position: the writing transaction's id and a sequence number. Sequence numbers are
-- taken in no particular commit order (a transaction may take a lower one and commit later);
-- consumers only read rows whose transaction id is below the oldest running transaction
-- (`pg_snapshot_xmin(pg_current_snapshot())`), and no transaction that has not ended can ever
-- be below it, so reading in (tx_id, seq) order never skips a late commit.
ALTER TABLE outbox ADD COLUMN tx_id xid8, ADD COLUMN seq bigint;
CREATE SEQUENCE outbox_seq AS bigint OWNED BY outbox.seq;

-- Existing rows get positions in creation order under a fixed low transaction id: claims and
-- acks rewrote these rows, so their xmin says nothing about when they were written. 1 is below
-- every normal transaction id, so these rows come first and are always visible.
WITH ordered AS (
    SELECT event_id, row_number() OVER (ORDER BY created_at, event_id) AS n FROM outbox
)
UPDATE outbox SET tx_id = '1'::xid8, seq = ordered.n
FROM ordered WHERE outbox.event_id = ordered.event_id;
SELECT setval('outbox_seq', (SELECT count(*) FROM outbox) + 1, false);

ALTER TABLE outbox
    ALTER COLUMN tx_id SET DEFAULT pg_current_xact_id(),
    ALTER COLUMN tx_id SET NOT NULL,
    ALTER COLUMN seq SET DEFAULT nextval('outbox_seq'),
    ALTER COLUMN seq SET NOT NULL;

-- Every consumer reads by this index: a range scan after its position, whatever the history.
CREATE UNIQUE INDEX outbox_log_position ON outbox (tx_id, seq);

-- Replay filters by creation time.
CREATE INDEX outbox_created_at ON outbox (created_at);

-- Identifies this log. A consumer whose sink stores its position (the ranking, in Redis) stores
-- this id with it, so a position taken from another database (one dropped and created again, a
-- cluster restored elsewhere) is recognised as foreign instead of silently skipping new rows.
CREATE TABLE outbox_log (
    log_id    uuid    NOT NULL DEFAULT gen_random_uuid(),
    singleton boolean NOT NULL DEFAULT true CONSTRAINT outbox_log_pkey PRIMARY KEY
                      CONSTRAINT outbox_log_one_row CHECK (singleton)
);
INSERT INTO outbox_log DEFAULT VALUES;

-- Each consumer's position as Postgres last heard of it, and its health as its active instance
-- last reported it: what `status`, lag metrics and pruning read. For the ranking this is a
-- mirror; the position that counts is the one in Redis, written with the effect.
CREATE TABLE outbox_consumers (
    name          text        CONSTRAINT outbox_consumers_pkey PRIMARY KEY,
    position_tx   xid8        NOT NULL DEFAULT '0'::xid8,
    position_seq  bigint      NOT NULL DEFAULT 0,
    -- running, paused (with why in `detail`), or stopped.
    state         text        NOT NULL DEFAULT 'stopped'
                              CONSTRAINT outbox_consumers_state_known CHECK (state IN ('running', 'paused', 'stopped')),
    detail        text,
    -- Which process holds the consumer, and when it last said so.
    active_instance text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO outbox_consumers (name) VALUES ('ranking');

-- Events a consumer could not handle on their own account (undecodable, unknown version),
-- recorded before the consumer's position moves past them, so a crash in between loses nothing.
CREATE TABLE outbox_dead_letters (
    consumer   text        NOT NULL CONSTRAINT outbox_dead_letters_consumer_fkey REFERENCES outbox_consumers (name),
    event_id   uuid        NOT NULL CONSTRAINT outbox_dead_letters_event_fkey REFERENCES outbox (event_id),
    error      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT outbox_dead_letters_pkey PRIMARY KEY (consumer, event_id)
);

-- The old relay's dead rows keep their error as the ranking's dead letters.
INSERT INTO outbox_dead_letters (consumer, event_id, error)
SELECT 'ranking', event_id, coalesce(last_error, 'dead-lettered before the upgrade')
FROM outbox WHERE status = 'DEAD';

-- The old relay's state goes. The first new worker finds no position in Redis and re-applies
-- every event once (idempotent writes), so pending rows are not lost.
DROP INDEX outbox_unfinished_by_due_time;
DROP INDEX outbox_processed_by_created_at;
ALTER TABLE outbox
    DROP CONSTRAINT outbox_processed_has_time,
    DROP COLUMN status,
    DROP COLUMN attempts,
    DROP COLUMN next_attempt_at,
    DROP COLUMN claim_token,
    DROP COLUMN last_error,
    DROP COLUMN processed_at;
