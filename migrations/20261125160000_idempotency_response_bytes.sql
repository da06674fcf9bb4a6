-- Replays return the first response's exact bytes (SPEC §3: "the first response again").
--
-- response_body is jsonb, which keeps a value, not its text: it re-orders keys (by length,
-- then bytes), so a replay's body differed from the first response's. response_bytes keeps the
-- body as it was sent. payment-svc still writes response_body too, so an instance of the
-- previous version, which reads only response_body, replays keys saved during a rollout; a
-- later migration can drop it. Rows saved before this migration have only response_body, and
-- are replayed from it.
ALTER TABLE idempotency_keys ADD COLUMN response_bytes bytea;
