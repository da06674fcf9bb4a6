//! Business metrics. The request log is `shared::http::with_request_log`, request metrics
//! `shared::metrics::record_request`.

/// Business counters, named once.
pub fn payment_confirmed() {
    metrics::counter!("payments_confirmed_total").increment(1);
}

pub fn schedule_sold_out() {
    metrics::counter!("schedules_sold_out_total").increment(1);
}
