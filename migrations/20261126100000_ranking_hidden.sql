-- Entries an operator hid from the sell-out ranking (`ranking-worker ranking remove`): a test or
-- fraudulent sell-out. Kept in Postgres, not only in Redis, because Redis is rebuilt from the
-- outbox (a heal after Redis lost everything, `replay`, `replay --rebuild`): every path that
-- writes the boards loads this list into Redis first and skips what it names.
--
-- A restore (`ranking restore`) closes the row instead of deleting it, so who hid what, why and
-- for how long stays on record; a member is hidden while it has an open row.
CREATE TABLE ranking_hidden (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member      text        NOT NULL
        CONSTRAINT ranking_hidden_member_format CHECK (member ~ '^concert:[0-9]+:schedule:[0-9]+$'),
    reason      text        NOT NULL
        CONSTRAINT ranking_hidden_reason_given CHECK (btrim(reason) <> ''),
    hidden_by   text        NOT NULL,
    hidden_at   timestamptz NOT NULL DEFAULT now(),
    restored_by text,
    restored_at timestamptz,
    CONSTRAINT ranking_hidden_restore_complete CHECK ((restored_by IS NULL) = (restored_at IS NULL))
);

-- One open row per member: hiding twice is answered "already hidden", and the list the writers
-- load is the open rows.
CREATE UNIQUE INDEX ranking_hidden_open ON ranking_hidden (member) WHERE restored_at IS NULL;
