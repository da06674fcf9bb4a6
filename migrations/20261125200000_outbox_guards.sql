-- Guards on the outbox log that its consumers rely on.

-- `ranking-worker prune` deletes outbox rows, and each delete checks the dead letters that
-- reference the row (their foreign key). Without an index on `event_id` that check scans every
-- dead letter, for each deleted row, while the batch holds every consumer's row: seconds per
-- batch with tens of thousands of dead letters, during which no consumer can move its mirror.
CREATE INDEX outbox_dead_letters_event_id ON outbox_dead_letters (event_id);

-- TRUNCATE fires no DELETE trigger: it would empty the log, every ConcertSoldOut with it, and
-- leave `outbox_log.sold_out_deleted` at 0, so heal, replay and rebuild would silently write a
-- smaller board. Refused like deleting a ConcertSoldOut row.
CREATE FUNCTION outbox_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the outbox is never truncated: the ranking heals and rebuilds from its ConcertSoldOut rows (ranking-worker prune deletes the rows that may go)'
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER outbox_refuse_truncate
    BEFORE TRUNCATE ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_refuse_truncate();

-- Consumers compute lags and ages from `created_at`; an infinite or out-of-range time (only a
-- hand-written row could have one) would fail those statements or, decoded into a Rust time,
-- panic the consumer on every instance. Checked without a long lock: NOT VALID, then VALIDATE.
ALTER TABLE outbox ADD CONSTRAINT outbox_created_at_finite
    CHECK (isfinite(created_at) AND created_at < '9999-01-01') NOT VALID;
ALTER TABLE outbox VALIDATE CONSTRAINT outbox_created_at_finite;
