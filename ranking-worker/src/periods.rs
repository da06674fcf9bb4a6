//! Boards per period (SPEC §5): the calendar day, ISO week and month of a sell-out in
//! `RANKING_TIMEZONE`, their names, and when each board expires (`RANKING_PERIOD_RETENTION_DAYS`
//! after its period ends).
//!
//! Computed here, not in the apply script: Lua has no time zones. The script gets each event's
//! boards by name and writes them with the all-time one.
//!
//! A board's name carries its time zone (`day:Asia/Seoul:2026-11-25`): a process reckoning in
//! another zone (a standby configured otherwise, a `replay` run without `RANKING_TIMEZONE`)
//! writes boards of its own, and never puts an event on a second board of the same kind beside
//! the one the first zone chose. Reads use the configured zone's boards; another zone's age out
//! with their retention, or go with the next `replay --rebuild`.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// Which calendar period a board covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodKind {
    Day,
    /// An ISO week, Monday to Sunday; its year is the ISO week-numbering year.
    Week,
    Month,
}

impl PeriodKind {
    pub const ALL: [PeriodKind; 3] = [PeriodKind::Day, PeriodKind::Week, PeriodKind::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
        }
    }
}

impl std::str::FromStr for PeriodKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "day" => Ok(PeriodKind::Day),
            "week" => Ok(PeriodKind::Week),
            "month" => Ok(PeriodKind::Month),
            _ => Err(format!("must be day, week or month, got {text:?}")),
        }
    }
}

/// One period: its board's name (`day:Asia/Seoul:2026-11-25`, `week:Asia/Seoul:2026-W48`,
/// `month:Asia/Seoul:2026-11`), the ranking key's helper key suffix, and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub kind: PeriodKind,
    /// The time zone the period is reckoned in.
    pub timezone: Tz,
    /// The period alone: `2026-11-25`, `2026-W48`, `2026-11`.
    pub label: String,
    /// The first instant after the period, in UTC.
    pub ends_at: DateTime<Utc>,
}

impl Period {
    /// The board's name under the ranking key: `{K}:{name}`. IANA names hold no braces, so the
    /// key stays in the ranking's hash slot.
    pub fn name(&self) -> String {
        format!(
            "{}:{}:{}",
            self.kind.as_str(),
            self.timezone.name(),
            self.label
        )
    }
}

/// The time zone in a board's name (`day:Asia/Seoul:2026-11-25`); `None` for a name that holds
/// none.
pub fn zone_of_board(name: &str) -> Option<Tz> {
    let (_kind, rest) = name.split_once(':')?;
    let (zone, _label) = rest.rsplit_once(':')?;
    zone.parse().ok()
}

/// A period as the read API and `top --json` show it beside the board's entries.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PeriodView {
    /// `day`, `week` or `month`.
    pub kind: &'static str,
    /// `2026-11-25`, `2026-W48`, `2026-11`.
    pub name: String,
    /// The IANA time zone the period is reckoned in.
    pub time_zone: &'static str,
    /// The first instant after the period.
    pub ends_at: DateTime<Utc>,
}

impl PeriodView {
    pub fn new(period: &Period) -> Self {
        Self {
            kind: period.kind.as_str(),
            name: period.label.clone(),
            time_zone: period.timezone.name(),
            ends_at: period.ends_at,
        }
    }
}

/// Where periods are reckoned and how long their boards are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodSettings {
    pub timezone: Tz,
    /// A board expires this many days after its period ends.
    pub retention_days: u32,
}

/// The product is Korean: its days start at midnight in Seoul.
pub const DEFAULT_TIMEZONE: Tz = chrono_tz::Asia::Seoul;

/// Just over a year: this month's board can be compared with the same month last year (the
/// month ended 365 days ago is kept until 400 days after it ended), and the boards alive at once
/// stay bounded (about 400 days, 58 weeks, 14 months, each with that period's sell-outs only).
pub const DEFAULT_RETENTION_DAYS: u32 = 400;

/// Longer than any period worth keeping; a bound so the expiry time cannot overflow.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

impl Default for PeriodSettings {
    fn default() -> Self {
        Self {
            timezone: DEFAULT_TIMEZONE,
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

/// `RANKING_TIMEZONE`: an IANA name, e.g. `Asia/Seoul`, `UTC`, `Europe/Berlin`.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("not an IANA time zone name (e.g. Asia/Seoul, UTC), got {name:?}"))
}

impl PeriodSettings {
    /// The day, week and month `at` falls in, in the time zone.
    pub fn periods_of(&self, at: DateTime<Utc>) -> Option<[Period; 3]> {
        let date = self.local_date(at);
        let [day, week, month] = PeriodKind::ALL.map(|kind| self.period(kind, date));
        Some([day?, week?, month?])
    }

    /// The calendar date `at` falls on in the time zone.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.timezone).date_naive()
    }

    /// The period of `kind` holding the local date `date`; `None` at the calendar's far edge.
    pub fn period(&self, kind: PeriodKind, date: NaiveDate) -> Option<Period> {
        let (label, next_start) = match kind {
            PeriodKind::Day => (date.format("%Y-%m-%d").to_string(), date.succ_opt()?),
            PeriodKind::Week => {
                let week = date.iso_week();
                let monday =
                    date.checked_sub_days(Days::new(date.weekday().num_days_from_monday().into()))?;
                (
                    format!("{}-W{:02}", week.year(), week.week()),
                    monday.checked_add_days(Days::new(7))?,
                )
            }
            PeriodKind::Month => {
                let first = date.with_day(1)?;
                (
                    date.format("%Y-%m").to_string(),
                    first.checked_add_months(Months::new(1))?,
                )
            }
        };
        Some(Period {
            kind,
            timezone: self.timezone,
            label,
            ends_at: self.start_of(next_start)?,
        })
    }

    /// Today's date in the time zone.
    pub fn today(&self) -> NaiveDate {
        Utc::now().with_timezone(&self.timezone).date_naive()
    }

    /// When `period`'s board expires; `None` beyond the calendar's far edge (a hand-written
    /// date in year 262,000), where it gets no board.
    pub fn expires_at(&self, period: &Period) -> Option<DateTime<Utc>> {
        period
            .ends_at
            .checked_add_signed(chrono::Duration::days(self.retention_days.into()))
    }

    /// When `period`'s board expires, if that is after `now`; `None` for a board past retention
    /// at `now` (it is not written again) or one beyond the calendar.
    pub fn live_until(&self, period: &Period, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.expires_at(period).filter(|expiry| *expiry > now)
    }

    /// The first instant of the local date `date`: midnight, or the first hour that exists
    /// where a daylight-saving change skips midnight.
    fn start_of(&self, date: NaiveDate) -> Option<DateTime<Utc>> {
        (0..24).find_map(|hour| {
            let local = date.and_hms_opt(hour, 0, 0)?;
            self.timezone
                .from_local_datetime(&local)
                .earliest()
                .map(|start| start.with_timezone(&Utc))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn names(settings: &PeriodSettings, at: &str) -> Vec<String> {
        settings
            .periods_of(utc(at))
            .unwrap()
            .iter()
            .map(Period::name)
            .collect()
    }

    #[test]
    fn a_sell_out_after_midnight_in_seoul_is_on_the_next_day_there() {
        let seoul = PeriodSettings::default();
        // 15:30 UTC is 00:30 the next day in Seoul (UTC+9).
        assert_eq!(
            names(&seoul, "2026-11-24T15:30:00Z"),
            [
                "day:Asia/Seoul:2026-11-25",
                "week:Asia/Seoul:2026-W48",
                "month:Asia/Seoul:2026-11"
            ]
        );
        assert_eq!(
            names(&seoul, "2026-11-24T14:59:59.999Z"),
            [
                "day:Asia/Seoul:2026-11-24",
                "week:Asia/Seoul:2026-W48",
                "month:Asia/Seoul:2026-11"
            ]
        );
        let day = seoul.periods_of(utc("2026-11-24T15:30:00Z")).unwrap()[0].clone();
        assert_eq!(day.ends_at, utc("2026-11-25T15:00:00Z"));
    }

    #[test]
    fn boards_of_different_zones_never_share_a_name() {
        let seoul = PeriodSettings::default();
        let utc_zone = PeriodSettings {
            timezone: chrono_tz::UTC,
            ..seoul
        };
        // 1 December 01:00 in Seoul, still 30 November in UTC.
        assert_eq!(
            names(&seoul, "2026-11-30T16:00:00Z")[2],
            "month:Asia/Seoul:2026-12"
        );
        assert_eq!(
            names(&utc_zone, "2026-11-30T16:00:00Z")[2],
            "month:UTC:2026-11"
        );
        // The same label in both zones is still two boards.
        assert_ne!(
            names(&seoul, "2026-11-25T03:00:00Z"),
            names(&utc_zone, "2026-11-25T03:00:00Z")
        );
    }

    #[test]
    fn a_boards_name_tells_its_zone() {
        assert_eq!(
            zone_of_board("week:America/Argentina/Buenos_Aires:2026-W48"),
            Some(chrono_tz::America::Argentina::Buenos_Aires)
        );
        assert_eq!(zone_of_board("day:UTC:2026-11-25"), Some(chrono_tz::UTC));
        assert_eq!(zone_of_board("day:2026-11-25"), None);
        assert_eq!(zone_of_board("month"), None);
    }

    #[test]
    fn iso_weeks_belong_to_their_week_year() {
        let seoul = PeriodSettings::default();
        // Thursday 31 December 2026 is in 2026's 53rd week; Monday 4 January 2027 starts W01.
        assert_eq!(
            names(&seoul, "2026-12-31T03:00:00Z"),
            [
                "day:Asia/Seoul:2026-12-31",
                "week:Asia/Seoul:2026-W53",
                "month:Asia/Seoul:2026-12"
            ]
        );
        let week = &seoul.periods_of(utc("2026-12-31T03:00:00Z")).unwrap()[1];
        assert_eq!(week.ends_at, utc("2027-01-03T15:00:00Z"));
        // Sunday 3 January 2027 is still in 2026-W53.
        assert_eq!(
            names(&seoul, "2027-01-03T10:00:00Z")[1],
            "week:Asia/Seoul:2026-W53".to_owned()
        );
        // 1 January 2021 (a Friday) is in 2020-W53.
        assert_eq!(
            names(&seoul, "2021-01-01T03:00:00Z")[1],
            "week:Asia/Seoul:2020-W53"
        );
    }

    #[test]
    fn months_end_at_the_next_first_in_the_zone() {
        let seoul = PeriodSettings::default();
        let month = &seoul.periods_of(utc("2026-12-15T00:00:00Z")).unwrap()[2];
        assert_eq!(month.name(), "month:Asia/Seoul:2026-12");
        assert_eq!(month.ends_at, utc("2026-12-31T15:00:00Z"));
    }

    #[test]
    fn a_board_expires_retention_days_after_its_period_ends() {
        let settings = PeriodSettings {
            timezone: chrono_tz::UTC,
            retention_days: 10,
        };
        let day = settings.period(
            PeriodKind::Day,
            NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
        );
        let day = day.unwrap();
        assert_eq!(settings.expires_at(&day), Some(utc("2026-12-06T00:00:00Z")));
        assert!(settings
            .live_until(&day, utc("2026-12-05T23:59:59Z"))
            .is_some());
        assert_eq!(settings.live_until(&day, utc("2026-12-06T00:00:00Z")), None);
    }

    #[test]
    fn a_skipped_midnight_starts_the_day_at_the_first_hour_that_exists() {
        // Santiago moved its clocks from 00:00 to 01:00 on 2022-09-11.
        let santiago = PeriodSettings {
            timezone: chrono_tz::America::Santiago,
            retention_days: 1,
        };
        let day = santiago
            .period(
                PeriodKind::Day,
                NaiveDate::from_ymd_opt(2022, 9, 10).unwrap(),
            )
            .unwrap();
        assert_eq!(day.ends_at, utc("2022-09-11T04:00:00Z"));
    }

    #[test]
    fn the_calendar_edge_has_no_period() {
        let settings = PeriodSettings::default();
        assert_eq!(settings.period(PeriodKind::Day, NaiveDate::MAX), None);
        assert_eq!(settings.period(PeriodKind::Month, NaiveDate::MAX), None);
    }

    #[test]
    fn time_zones_and_kinds_parse_or_say_why() {
        assert_eq!(parse_timezone("Asia/Seoul"), Ok(chrono_tz::Asia::Seoul));
        assert!(parse_timezone("Mars/Olympus").is_err());
        assert_eq!("week".parse(), Ok(PeriodKind::Week));
        assert!("year".parse::<PeriodKind>().is_err());
    }
}
