-- The Idempotency-Key claimed by the statement that does the work (issue 14: round trips): a
-- payment is one statement between BEGIN and COMMIT, a charge's claim one statement instead of
-- two (claim, then read the first response).
--
-- idempotency_claim is the one place a key is claimed (payment-svc's idempotency::begin calls it
-- for charges, booking_pay_with_key for payments). Its outcome:
--   CLAIMED  this transaction holds the key: do the work, store the response with
--            idempotency_save, commit. A concurrent duplicate waits for the commit.
--   REPLAY   an earlier request committed the key with this body: response_status and
--            response_bytes are its response (the jsonb value for keys saved before
--            response_bytes existed).
--   REUSED   an earlier request committed the key with another body.
--   IN_USE   the first request still held the key when lock_timeout (or statement_timeout)
--            ran out.
-- IN_USE is told apart from any other lock timeout by the exception block around the claim,
-- the only one in these functions: a later lock wait that times out (on the hold, while a
-- competing payment of it is in flight) is still an error, 503 UNAVAILABLE, not a 409 about
-- the key. Entering the block costs a subtransaction per claim, which the claim's row is
-- written in; that is cheap beside the round trip it saves.

CREATE FUNCTION idempotency_claim(
    p_user bigint, p_endpoint text, p_key text, p_hash bytea,
    OUT outcome text, OUT response_status smallint, OUT response_bytes bytea)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_claimed bigint;
    v_hash bytea;
BEGIN
    PERFORM booking_require_read_committed();
    -- The primary key makes this wait while another transaction holds the key, until it ends.
    BEGIN
        INSERT INTO idempotency_keys (user_id, endpoint, key, request_hash)
        VALUES (p_user, p_endpoint, p_key, p_hash)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS v_claimed = ROW_COUNT;
    EXCEPTION WHEN lock_not_available OR query_canceled THEN
        outcome := 'IN_USE';
        RETURN;
    END;
    IF v_claimed = 1 THEN
        outcome := 'CLAIMED';
        RETURN;
    END IF;
    -- Committed by an earlier request: this statement's fresh snapshot (READ COMMITTED, a
    -- volatile function) shows it.
    SELECT k.request_hash, k.response_status,
           COALESCE(k.response_bytes, convert_to(k.response_body::text, 'UTF8'))
      INTO STRICT v_hash, response_status, response_bytes
      FROM idempotency_keys k
     WHERE k.user_id = p_user AND k.endpoint = p_endpoint AND k.key = p_key;
    IF v_hash <> p_hash THEN
        outcome := 'REUSED';
        response_status := NULL;
        response_bytes := NULL;
        RETURN;
    END IF;
    outcome := 'REPLAY';
END
$$;

-- A payment with its key: idempotency_claim, then, if claimed, booking_pay. claim is the
-- claim's outcome; the other columns are booking_pay's when claimed, and for REPLAY,
-- response_status and response_bytes are the first response's.
CREATE FUNCTION booking_pay_with_key(
    p_user bigint, p_reservation uuid, p_payment uuid, p_endpoint text, p_key text,
    p_hash bytea,
    OUT claim text, OUT outcome text, OUT amount bigint, OUT balance bigint,
    OUT schedule_id bigint, OUT concert_id bigint, OUT concert_title text,
    OUT seat_count integer, OUT sale_starts_at timestamptz, OUT sold_out_at timestamptz,
    OUT response_status smallint, OUT response_bytes bytea)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    SELECT k.outcome, k.response_status, k.response_bytes
      INTO claim, response_status, response_bytes
      FROM idempotency_claim(p_user, p_endpoint, p_key, p_hash) k;
    IF claim <> 'CLAIMED' THEN
        RETURN;
    END IF;
    SELECT p.outcome, p.amount, p.balance, p.schedule_id, p.concert_id, p.concert_title,
           p.seat_count, p.sale_starts_at, p.sold_out_at, p.response_bytes
      INTO outcome, amount, balance, schedule_id, concert_id, concert_title,
           seat_count, sale_starts_at, sold_out_at, response_bytes
      FROM booking_pay(p_user, p_reservation, p_payment, p_endpoint, p_key) p;
    IF outcome = 'PAID' THEN
        response_status := 201;
    END IF;
END
$$;
