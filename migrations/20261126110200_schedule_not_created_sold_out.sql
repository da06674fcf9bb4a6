-- Found in review: schedules_sold_out_when_full (20261125191000_seat_counters.sql) runs on
-- updates of sold_out_at only, so a schedule inserted with sold_out_at already set was taken:
-- sold out with every seat unsold, and never counted into the ranking (no payment ever empties
-- its counters, so no ConcertSoldOut is written). A schedule is created unsold; only the payment
-- of its last seat stamps sold_out_at.

CREATE FUNCTION schedule_created_unsold() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'schedule % is created unsold: only the payment of its last seat sets sold_out_at', NEW.id
        USING ERRCODE = 'check_violation', CONSTRAINT = 'schedules_sold_out_when_full';
END
$$;

-- The WHEN clause keeps its cost to a comparison for every schedule created as it should be.
CREATE TRIGGER schedule_created_unsold
    BEFORE INSERT ON schedules
    FOR EACH ROW WHEN (NEW.sold_out_at IS NOT NULL)
    EXECUTE FUNCTION schedule_created_unsold();
