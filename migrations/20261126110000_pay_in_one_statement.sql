-- A payment request in one statement, committed on its own (issue 14: round trips).
--
-- Before, POST /payments took three round trips: BEGIN, booking_pay_with_key, COMMIT (and two
-- more, the outbox row and its NOTIFY, for the payment that sold the last seat). The function
-- below does all of it, so payment-svc sends one statement and Postgres commits it by itself
-- (autocommit): the statement is the transaction. Its guarantees are those of the transaction
-- it replaces, as nothing in it depends on being one statement of several:
-- * It is VOLATILE plpgsql, so each statement inside takes a fresh snapshot (READ COMMITTED, as
--   booking_require_read_committed checks): the sell-out and the key's replay are decided on
--   what committed before their lock waits, as they were.
-- * It commits only if it returns: an error in any step (a lost race on
--   payments_one_per_reservation, a second ConcertSoldOut on
--   outbox_one_sold_out_per_schedule, a lock timeout) rolls the whole payment back.
-- * A refusal (NOT_FOUND, NOT_HELD, EXPIRED, INSUFFICIENT_BALANCE) returns, and so commits.
--   booking_confirm_payment writes nothing for a refusal; the claimed key is the one row
--   written, and it is deleted again, as the rollback used to drop it: a failed request is not
--   stored, and a retry with the same key (after a top-up, say) tries again. A duplicate that
--   waited for the key claims it once this commits, as it did after a rollback.
--
-- booking_pay_with_key stays as it was, for instances of the previous version during a
-- rollout; both write the same rows.

-- A time as the JSON string serde writes for chrono's DateTime<Utc>: RFC 3339 in UTC with `Z`,
-- and a fraction of 3 or 6 digits only if it is not zero (chrono's AutoSi; Postgres keeps
-- microseconds). The payment-svc test the_sold_out_payload_matches_the_contract compares the
-- payload with serde's own serialisation.
CREATE FUNCTION json_time(p_time timestamptz) RETURNS text
LANGUAGE sql STABLE STRICT AS $$
    SELECT to_char(p_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE
               WHEN micros % 1000000 = 0 THEN ''
               WHEN micros % 1000 = 0 THEN to_char(p_time AT TIME ZONE 'UTC', '.MS')
               ELSE to_char(p_time AT TIME ZONE 'UTC', '.US')
           END
        || 'Z'
      FROM (SELECT extract(microseconds FROM p_time AT TIME ZONE 'UTC')::bigint AS micros) AS t;
$$;

-- The ConcertSoldOut event of a schedule, written to the outbox with its wake-up, on the
-- caller's transaction: the row and the notification take effect at its commit, or not at all.
-- The payload is shared::events::ConcertSoldOut, version 1 (SPEC §4), field for field; the
-- relay decodes it with that type. pg_notify's channel is shared::outbox::NOTIFY_CHANNEL.
CREATE FUNCTION outbox_enqueue_concert_sold_out(
    p_event uuid, p_concert bigint, p_schedule bigint, p_title text, p_seat_count integer,
    p_sale_started_at timestamptz, p_sold_out_at timestamptz)
RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, payload)
    VALUES (p_event, 'ConcertSoldOut', 1, p_schedule, jsonb_build_object(
        'event_id', p_event,
        'concert_id', p_concert,
        'schedule_id', p_schedule,
        'concert_title', p_title,
        'seat_count', p_seat_count,
        'sale_started_at', json_time(p_sale_started_at),
        'sold_out_at', json_time(p_sold_out_at)));
    PERFORM pg_notify('outbox_ready', p_event::text);
END
$$;

-- POST /payments: claims the Idempotency-Key, pays, writes the ConcertSoldOut event if this
-- payment sold the last seat (p_event is its id), and stores the response; meant to run as a
-- statement of its own.
--
-- claim is idempotency_claim's outcome. For REPLAY, response_status and response_bytes are the
-- first response's; REUSED and IN_USE come alone. For CLAIMED, outcome is
-- booking_confirm_payment's: PAID with amount, balance, sold_out (whether this payment sold
-- the schedule out) and the stored 201 response, or a refusal with nothing stored (balance and
-- amount are the payer's balance and the price for INSUFFICIENT_BALANCE).
CREATE FUNCTION booking_pay_request(
    p_user bigint, p_reservation uuid, p_payment uuid, p_event uuid, p_endpoint text,
    p_key text, p_hash bytea,
    OUT claim text, OUT outcome text, OUT amount bigint, OUT balance bigint,
    OUT sold_out boolean, OUT response_status smallint, OUT response_bytes bytea)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_paid record;
BEGIN
    SELECT k.outcome, k.response_status, k.response_bytes
      INTO claim, response_status, response_bytes
      FROM idempotency_claim(p_user, p_endpoint, p_key, p_hash) k;
    IF claim <> 'CLAIMED' THEN
        RETURN;
    END IF;
    SELECT * INTO v_paid FROM booking_pay(p_user, p_reservation, p_payment, p_endpoint, p_key);
    outcome := v_paid.outcome;
    amount := v_paid.amount;
    balance := v_paid.balance;
    IF outcome <> 'PAID' THEN
        -- Nothing was paid: free the key (see the top of this file).
        DELETE FROM idempotency_keys k
         WHERE k.user_id = p_user AND k.endpoint = p_endpoint AND k.key = p_key;
        RETURN;
    END IF;
    sold_out := v_paid.sold_out_at IS NOT NULL;
    IF sold_out THEN
        PERFORM outbox_enqueue_concert_sold_out(
            p_event, v_paid.concert_id, v_paid.schedule_id, v_paid.concert_title,
            v_paid.seat_count, v_paid.sale_starts_at, v_paid.sold_out_at);
    END IF;
    response_status := 201;
    response_bytes := v_paid.response_bytes;
END
$$;
