//! A concert to create, with its schedules, checked against SPEC §3's limits.

use chrono::{DateTime, SubsecRound, Utc};

const TITLE_CHARS: std::ops::RangeInclusive<usize> = 1..=200;
const SCHEDULES: std::ops::RangeInclusive<usize> = 1..=100;
const SEAT_COUNT: std::ops::RangeInclusive<i64> = 1..=100_000;
const PRICE: std::ops::RangeInclusive<i64> = 1..=10_000_000;

/// What a client sends for one schedule, before validation.
pub struct RawSchedule {
    pub starts_at: DateTime<Utc>,
    pub sale_starts_at: DateTime<Utc>,
    pub seat_count: i64,
    pub price: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchedule {
    /// Times are kept to the millisecond: the sell-out score has millisecond precision, and
    /// truncating here makes the stored times and the score agree exactly.
    starts_at: DateTime<Utc>,
    sale_starts_at: DateTime<Utc>,
    seat_count: i32,
    price: i64,
}

impl NewSchedule {
    pub fn parse(raw: RawSchedule, index: usize) -> Result<Self, String> {
        let starts_at = raw.starts_at.trunc_subsecs(3);
        let sale_starts_at = raw.sale_starts_at.trunc_subsecs(3);
        if sale_starts_at >= starts_at {
            return Err(format!(
                "schedules[{index}]: sale_starts_at must be before starts_at"
            ));
        }
        if !SEAT_COUNT.contains(&raw.seat_count) {
            return Err(format!(
                "schedules[{index}]: seat_count must be between {} and {}, got {}",
                SEAT_COUNT.start(),
                SEAT_COUNT.end(),
                raw.seat_count
            ));
        }
        if !PRICE.contains(&raw.price) {
            return Err(format!(
                "schedules[{index}]: price must be between {} and {}, got {}",
                PRICE.start(),
                PRICE.end(),
                raw.price
            ));
        }
        Ok(Self {
            starts_at,
            sale_starts_at,
            seat_count: raw.seat_count as i32, // in SEAT_COUNT, so it fits
            price: raw.price,
        })
    }

    pub fn starts_at(&self) -> DateTime<Utc> {
        self.starts_at
    }
    pub fn sale_starts_at(&self) -> DateTime<Utc> {
        self.sale_starts_at
    }
    pub fn seat_count(&self) -> i32 {
        self.seat_count
    }
    pub fn price(&self) -> i64 {
        self.price
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConcert {
    title: String,
    schedules: Vec<NewSchedule>,
}

impl NewConcert {
    pub fn parse(title: String, schedules: Vec<RawSchedule>) -> Result<Self, String> {
        let chars = title.chars().count();
        if !TITLE_CHARS.contains(&chars) {
            return Err(format!(
                "title must be {} to {} characters, got {chars}",
                TITLE_CHARS.start(),
                TITLE_CHARS.end()
            ));
        }
        super::check_text("title", &title)?;
        if !SCHEDULES.contains(&schedules.len()) {
            return Err(format!(
                "a concert needs {} to {} schedules, got {}",
                SCHEDULES.start(),
                SCHEDULES.end(),
                schedules.len()
            ));
        }
        let schedules = schedules
            .into_iter()
            .enumerate()
            .map(|(index, raw)| NewSchedule::parse(raw, index))
            .collect::<Result<_, _>>()?;
        Ok(Self { title, schedules })
    }

    pub fn title(&self) -> &str {
        &self.title
    }
    pub fn schedules(&self) -> &[NewSchedule] {
        &self.schedules
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn raw(seat_count: i64, price: i64) -> RawSchedule {
        let starts_at = Utc.with_ymd_and_hms(2027, 1, 1, 19, 0, 0).unwrap();
        RawSchedule {
            starts_at,
            sale_starts_at: starts_at - chrono::Duration::days(7),
            seat_count,
            price,
        }
    }

    #[test]
    fn accepts_the_limits() {
        assert!(
            NewConcert::parse("a".repeat(200), vec![raw(1, 1), raw(100_000, 10_000_000)]).is_ok()
        );
    }

    #[test]
    fn refuses_out_of_range_values() {
        assert!(NewConcert::parse(String::new(), vec![raw(1, 1)]).is_err());
        assert!(NewConcert::parse("   ".into(), vec![raw(1, 1)]).is_err());
        assert!(NewConcert::parse("a\u{0}b".into(), vec![raw(1, 1)]).is_err());
        assert!(NewConcert::parse("a".repeat(201), vec![raw(1, 1)]).is_err());
        assert!(NewConcert::parse("t".into(), vec![]).is_err());
        assert!(NewConcert::parse("t".into(), (0..101).map(|_| raw(1, 1)).collect()).is_err());
        assert!(NewConcert::parse("t".into(), vec![raw(0, 1)]).is_err());
        assert!(NewConcert::parse("t".into(), vec![raw(100_001, 1)]).is_err());
        assert!(NewConcert::parse("t".into(), vec![raw(1, 0)]).is_err());
        assert!(NewConcert::parse("t".into(), vec![raw(1, 10_000_001)]).is_err());
    }

    #[test]
    fn sale_must_open_before_the_show() {
        let mut schedule = raw(1, 1);
        schedule.sale_starts_at = schedule.starts_at;
        assert!(NewConcert::parse("t".into(), vec![schedule]).is_err());
    }

    #[test]
    fn times_are_truncated_to_milliseconds() {
        let mut schedule = raw(1, 1);
        schedule.sale_starts_at += chrono::Duration::microseconds(1_999);
        let parsed = NewSchedule::parse(schedule, 0).unwrap();
        assert_eq!(parsed.sale_starts_at().timestamp_subsec_micros(), 1_000);
    }
}
