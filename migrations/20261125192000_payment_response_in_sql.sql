-- A payment's stored response written by the statement that confirms it (issue 14: round
-- trips): one statement fewer per payment.
--
-- idempotency_save is the one statement that stores a money endpoint's response (payment-svc's
-- idempotency::save calls it for charges). booking_pay confirms a payment with
-- booking_confirm_payment and, when it is paid, stores the 201 response it returns: the
-- Receipt as payment-svc serialises it (serde_json, fields in declaration order, no spaces;
-- format()'s %s of a boolean would be t or f, hence the CASE).
-- payment-svc compares these bytes with its own serialisation of the same Receipt before it
-- commits and refuses to commit (500) if they differ, so a response can never be stored
-- other than as it is sent.

CREATE FUNCTION idempotency_save(
    p_user bigint, p_endpoint text, p_key text, p_status smallint, p_bytes bytea)
RETURNS void LANGUAGE sql VOLATILE AS $$
    -- response_body as well, for instances of a version before response_bytes (see
    -- 20261125160000_idempotency_response_bytes.sql) during a rollout.
    UPDATE idempotency_keys
       SET response_status = p_status, response_bytes = p_bytes,
           response_body = convert_from(p_bytes, 'UTF8')::jsonb
     WHERE user_id = p_user AND endpoint = p_endpoint AND key = p_key;
$$;

CREATE FUNCTION booking_pay(
    p_user bigint, p_reservation uuid, p_payment uuid, p_endpoint text, p_key text,
    OUT outcome text, OUT amount bigint, OUT balance bigint, OUT schedule_id bigint,
    OUT concert_id bigint, OUT concert_title text, OUT seat_count integer,
    OUT sale_starts_at timestamptz, OUT sold_out_at timestamptz, OUT response_bytes bytea)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    SELECT c.outcome, c.amount, c.balance, c.schedule_id, c.concert_id, c.concert_title,
           c.seat_count, c.sale_starts_at, c.sold_out_at
      INTO outcome, amount, balance, schedule_id, concert_id, concert_title,
           seat_count, sale_starts_at, sold_out_at
      FROM booking_confirm_payment(p_user, p_reservation, p_payment) c;
    IF outcome = 'PAID' THEN
        response_bytes := convert_to(format(
            '{"payment_id":"%s","reservation_id":"%s","amount":%s,"balance":%s,"schedule_sold_out":%s}',
            p_payment, p_reservation, amount, balance,
            CASE WHEN sold_out_at IS NULL THEN 'false' ELSE 'true' END), 'UTF8');
        PERFORM idempotency_save(p_user, p_endpoint, p_key, 201::smallint, response_bytes);
    END IF;
END
$$;
