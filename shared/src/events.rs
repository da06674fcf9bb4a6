//! The events payment-svc writes to the outbox and ranking-worker consumes (SPEC §4).
//! Their payloads are a public contract: change them only by adding a new version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An event that can travel through the outbox.
pub trait OutboxEvent: Serialize {
    /// The `event_type` column.
    const EVENT_TYPE: &'static str;
    /// The `event_version` column: the payload's schema version.
    const EVENT_VERSION: i32;

    /// Unique per event; the consumer's deduplication key.
    fn event_id(&self) -> Uuid;
    /// The entity the event is about.
    fn aggregate_id(&self) -> i64;
}

/// `ConcertSoldOut` version 1: the last seat of a schedule was paid.
///
/// Both timestamps are stored at commit time with millisecond precision, so the sell-out
/// duration is a pure function of this payload: a late or repeated delivery cannot change it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcertSoldOut {
    pub event_id: Uuid,
    pub concert_id: i64,
    pub schedule_id: i64,
    pub concert_title: String,
    pub seat_count: i32,
    pub sale_started_at: DateTime<Utc>,
    pub sold_out_at: DateTime<Utc>,
}

impl ConcertSoldOut {
    /// Time from sale opening to sell-out in seconds, with millisecond precision (SPEC §5).
    pub fn sold_out_seconds(&self) -> f64 {
        let millis = (self.sold_out_at - self.sale_started_at).num_milliseconds();
        millis as f64 / 1000.0
    }
}

impl OutboxEvent for ConcertSoldOut {
    const EVENT_TYPE: &'static str = "ConcertSoldOut";
    const EVENT_VERSION: i32 = 1;

    fn event_id(&self) -> Uuid {
        self.event_id
    }

    fn aggregate_id(&self) -> i64 {
        self.schedule_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event(sale: DateTime<Utc>, sold: DateTime<Utc>) -> ConcertSoldOut {
        ConcertSoldOut {
            event_id: Uuid::nil(),
            concert_id: 7,
            schedule_id: 42,
            concert_title: "Title".into(),
            seat_count: 50,
            sale_started_at: sale,
            sold_out_at: sold,
        }
    }

    #[test]
    fn sold_out_seconds_has_millisecond_precision() {
        let sale = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        let sold = sale + chrono::Duration::milliseconds(93_412);
        assert_eq!(event(sale, sold).sold_out_seconds(), 93.412);
    }

    #[test]
    fn payload_has_exactly_the_contract_fields() {
        let sale = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        let sold = sale + chrono::Duration::milliseconds(1_500);
        let json = serde_json::to_value(event(sale, sold)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "event_id": "00000000-0000-0000-0000-000000000000",
                "concert_id": 7,
                "schedule_id": 42,
                "concert_title": "Title",
                "seat_count": 50,
                "sale_started_at": "2026-01-01T10:00:00Z",
                "sold_out_at": "2026-01-01T10:00:01.500Z",
            })
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"event_id":"00000000-0000-0000-0000-000000000000","concert_id":1,
            "schedule_id":2,"concert_title":"t","seat_count":1,
            "sale_started_at":"2026-01-01T10:00:00Z","sold_out_at":"2026-01-01T10:00:01Z","x":1}"#;
        assert!(serde_json::from_str::<ConcertSoldOut>(json).is_err());
    }
}
