-- Retention of the outbox log (`ranking-worker prune`, SPEC §4).
--
-- Rows are deleted only when every consumer has passed them and no consumer retains them for
-- rebuilding. The ranking heals and rebuilds from every `ConcertSoldOut`, so those rows stay
-- for good; this is enforced here, for every session, not only in prune: a `DELETE` that
-- reaches one fails, so no hand-written statement can silently shrink a rebuilt board.
--
-- What was deleted is recorded in `outbox_log`, whoever deleted it, in the deleting
-- transaction:
--   * `pruned_through`: the highest position of a deleted row. Positions at or before it may
--     name rows that are gone, so "is this position a place in the log" (`log::holds`) accepts
--     them, and `consumers reset` says which part of the range it cannot deliver again.
--   * `pruned_rows`, `pruned_at`: for `status`.
--   * `sold_out_deleted`: `ConcertSoldOut` rows deleted, which takes dropping or disabling the
--     trigger below. Replay and rebuild compare it with zero and refuse: the log no longer holds
--     every sell-out.
--
-- Time partitions (dropping a month at a time) were not chosen: the unique index that allows
-- one `ConcertSoldOut` per schedule would have to include the partition key, and then it no
-- longer guarantees one per schedule. Batched deletes of the few rows that may go keep it.
ALTER TABLE outbox_log
    ADD COLUMN pruned_through_tx  xid8        NOT NULL DEFAULT '0'::xid8,
    ADD COLUMN pruned_through_seq bigint      NOT NULL DEFAULT 0,
    ADD COLUMN pruned_rows        bigint      NOT NULL DEFAULT 0,
    ADD COLUMN sold_out_deleted   bigint      NOT NULL DEFAULT 0,
    ADD COLUMN pruned_at          timestamptz;

CREATE FUNCTION outbox_keep_sold_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'outbox row % is a ConcertSoldOut: those rows are never deleted (the ranking heals and rebuilds from them)', OLD.event_id
        USING ERRCODE = 'restrict_violation';
END
$$;

-- Row-level, but the WHEN clause keeps its cost to a comparison for the rows that may go.
CREATE TRIGGER outbox_keep_sold_out
    BEFORE DELETE ON outbox
    FOR EACH ROW WHEN (OLD.event_type = 'ConcertSoldOut')
    EXECUTE FUNCTION outbox_keep_sold_out();

CREATE FUNCTION outbox_record_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Once per statement: a prune batch of a thousand rows updates the singleton row once.
    UPDATE outbox_log SET
        (pruned_through_tx, pruned_through_seq) = (
            SELECT tx_id, seq FROM (
                SELECT tx_id, seq FROM deleted
                UNION ALL
                SELECT outbox_log.pruned_through_tx, outbox_log.pruned_through_seq
            ) AS positions
            ORDER BY tx_id DESC, seq DESC LIMIT 1),
        pruned_rows = pruned_rows + (SELECT count(*) FROM deleted),
        sold_out_deleted = sold_out_deleted
            + (SELECT count(*) FROM deleted WHERE event_type = 'ConcertSoldOut'),
        pruned_at = now()
    WHERE EXISTS (SELECT 1 FROM deleted);
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_record_deleted
    AFTER DELETE ON outbox
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT
    EXECUTE FUNCTION outbox_record_deleted();
