-- A consumer an operator paused (`consumers pause`), or one its sink disabled (a webhook endpoint
-- answering 410 Gone): its active instance delivers nothing until `consumers resume` clears it.
-- Kept apart from `state`, which the active instance rewrites as it runs.
ALTER TABLE outbox_consumers
    ADD COLUMN halted        text CONSTRAINT outbox_consumers_halted_known CHECK (halted IN ('paused', 'disabled')),
    ADD COLUMN halted_reason text,
    ADD COLUMN halted_at     timestamptz,
    ADD CONSTRAINT outbox_consumers_halted_complete
        CHECK ((halted IS NULL) = (halted_reason IS NULL) AND (halted IS NULL) = (halted_at IS NULL));
