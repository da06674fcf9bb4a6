//! Times clients send: strict RFC 3339, within the years SPEC §3 allows.

use std::ops::RangeInclusive;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Deserializer};

/// Years a time may fall in (in UTC). Far wider than any concert needs, far narrower than what
/// Postgres or chrono accept: outside it lie typos and probes, never a real schedule.
pub const YEARS: RangeInclusive<i32> = 2000..=2100;

/// A point in time sent by a client: an RFC 3339 `date-time` (JSON Schema's and OpenAPI's
/// format) with four-digit year, two-digit month, day, hour, minute and second, a `T`, and `Z`
/// or a `±hh:mm` offset, in [`YEARS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(
    value_type = String,
    format = DateTime,
    example = "2030-01-31T19:00:00+09:00",
    description = "An RFC 3339 date-time (four-digit year, `T`, `Z` or a `±hh:mm` offset) in the \
                   years 2000 to 2100, counted in UTC; any other time is refused with 422."
)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn parse(value: &str) -> Result<Self, String> {
        // chrono's own RFC 3339 parser holds to the grammar's digit counts (its `FromStr`, which
        // serde uses, takes `2030-1-1` and `+200000-...`) but, after a note in the RFC, also
        // takes a space for the `T`; the `date-time` format does not.
        let parsed = DateTime::parse_from_rfc3339(value)
            .ok()
            .filter(|_| matches!(value.as_bytes().get(10), Some(b'T' | b't')))
            .ok_or_else(|| {
                format!("{value:?} is not an RFC 3339 date-time such as 2030-01-31T19:00:00+09:00")
            })?;
        let utc = parsed.with_timezone(&Utc);
        if !YEARS.contains(&utc.year()) {
            return Err(format!(
                "{value:?} is outside the years {} to {} (UTC)",
                YEARS.start(),
                YEARS.end()
            ));
        }
        Ok(Self(utc))
    }

    pub fn get(self) -> DateTime<Utc> {
        self.0
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::parse(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_rfc_3339_in_range_passes() {
        for value in [
            "2000-01-01T00:00:00Z",
            "2100-12-31T23:59:59.999999Z",
            "2030-01-31T19:00:00+09:00",
            "2030-01-31t19:00:00z",
            "2030-01-31T19:00:00.5-03:30",
        ] {
            assert!(Timestamp::parse(value).is_ok(), "{value}");
        }
    }

    #[test]
    fn lenient_forms_and_far_years_are_refused() {
        for value in [
            "2030-1-1T00:00:00Z",
            "1-01-01 00:00:00 +00:00",
            "+200000-01-01T00:00:00Z",
            "-5000-01-01T00:00:00Z",
            "2030-01-01 00:00:00Z",
            "2030-01-01T00:00:00",
            "2030-01-01T00:00:00+0900",
            "2030-01-01",
            "1999-12-31T23:59:59Z",
            "2101-01-01T00:00:00Z",
            "2000-01-01T00:00:00+01:00",
        ] {
            assert!(Timestamp::parse(value).is_err(), "{value}");
        }
    }
}
