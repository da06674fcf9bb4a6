//! What a receiver's answer means for the event and for the consumer (SPEC §4), in one place:
//! delivered, refused (that event's own fault: a dead letter), or a reason to pause or stop.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;

/// The verdict on one attempt to deliver one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the receiver has it.
    Delivered,
    /// A 4xx that is about this event (400, 404, 413, 422, ...): dead-lettered, and the
    /// consumer moves on.
    Refused,
    /// 408, 429, 5xx, a timeout or a connection error: the receiver is unavailable. The
    /// consumer pauses with backoff (at least `retry_after` when the receiver said so) and
    /// retries the same event; nothing is dead-lettered for it.
    Unavailable { retry_after: Option<Duration> },
    /// 401 or 403: the receiver does not accept our signature or address; every event would
    /// fail alike. The consumer pauses and says so; nothing is dead-lettered.
    Misconfigured,
    /// 410 Gone: the endpoint is gone for good. The consumer is disabled until an operator
    /// resumes it.
    Gone,
}

impl Verdict {
    /// The verdict on an answer with `status` and the `Retry-After` header's value, if any.
    pub fn of(status: StatusCode, retry_after: Option<&str>, now: DateTime<Utc>) -> Self {
        match status.as_u16() {
            200..=299 => Verdict::Delivered,
            401 | 403 => Verdict::Misconfigured,
            410 => Verdict::Gone,
            408 | 429 | 500..=599 => Verdict::Unavailable {
                retry_after: retry_after.and_then(|value| parse_retry_after(value, now)),
            },
            // 1xx and 3xx (redirects are not followed: a signed request is not re-sent to an
            // address nobody configured) say the endpoint is not a working receiver.
            100..=199 | 300..=399 => Verdict::Misconfigured,
            400..=499 => Verdict::Refused,
            // Not an HTTP status a receiver sends (a broken proxy's 600–999): never a reason
            // to dead-letter an event, only to try again later.
            _ => Verdict::Unavailable { retry_after: None },
        }
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): a number of seconds, or an HTTP date. A date in the past
/// is no wait; anything unreadable is ignored (the backoff applies).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) is an RFC 2822 date.
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default())
}

/// The start of a response body, for a dead letter: at most `limit` characters, on one line.
pub fn excerpt(body: &str, limit: usize) -> String {
    let flat: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    match flat.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn verdict(status: u16, retry_after: Option<&str>) -> Verdict {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        Verdict::of(StatusCode::from_u16(status).unwrap(), retry_after, now)
    }

    #[test]
    fn statuses_map_as_the_spec_reads_them() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(verdict(status, None), Verdict::Delivered, "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(
                verdict(status, None),
                Verdict::Unavailable { retry_after: None },
                "{status}"
            );
        }
        assert_eq!(verdict(401, None), Verdict::Misconfigured);
        assert_eq!(verdict(403, None), Verdict::Misconfigured);
        assert_eq!(verdict(301, None), Verdict::Misconfigured);
        assert_eq!(verdict(410, None), Verdict::Gone);
        for status in [400, 404, 405, 409, 413, 415, 422, 451] {
            assert_eq!(verdict(status, None), Verdict::Refused, "{status}");
        }
        for status in [600, 999] {
            assert_eq!(
                verdict(status, None),
                Verdict::Unavailable { retry_after: None },
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        assert_eq!(
            verdict(503, Some("7")),
            Verdict::Unavailable {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            verdict(429, Some("Wed, 25 Nov 2026 12:01:30 GMT")),
            Verdict::Unavailable {
                retry_after: Some(Duration::from_secs(90))
            }
        );
        assert_eq!(
            verdict(503, Some("Wed, 25 Nov 2026 11:00:00 GMT")),
            Verdict::Unavailable {
                retry_after: Some(Duration::ZERO)
            },
            "a date in the past is no wait"
        );
        assert_eq!(
            verdict(503, Some("soon")),
            Verdict::Unavailable { retry_after: None }
        );
        assert_eq!(
            verdict(503, Some("-3")),
            Verdict::Unavailable { retry_after: None }
        );
    }

    #[test]
    fn an_excerpt_is_short_and_on_one_line() {
        assert_eq!(
            excerpt("  {\"error\":\n\"bad\"}  ", 100),
            "{\"error\": \"bad\"}"
        );
        assert_eq!(excerpt("ééééé", 3), "ééé…");
        assert_eq!(excerpt("", 3), "");
    }
}
