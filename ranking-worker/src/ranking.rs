//! The ranking in Redis (SPEC §5): the sorted set, its helper keys, and the scripts that change
//! or read them. Every write goes through a Lua script, so each is atomic.
//!
//! Keys, for a ranking key `K`:
//! - `K`: sorted set, member `concert:{concert_id}:schedule:{schedule_id}`, score the sell-out
//!   duration in seconds;
//! - `{K}:details`: hash member → display details (JSON);
//! - `{K}:position`: the ranking consumer's position in the outbox log, written by the same
//!   script as the effect it covers: what makes redelivery harmless and fences a stale worker;
//! - `{K}:applied_events`: how many events the apply script has applied, for auditing;
//! - `{K}:rebuild:{id}`, `{K}:rebuild:{id}:details`, `{K}:rebuild:{id}:started`: a rebuild in
//!   progress;
//! - `{K}:day:Asia/Seoul:2026-11-25`, `{K}:week:Asia/Seoul:2026-W48`,
//!   `{K}:month:Asia/Seoul:2026-11`: the boards per period in `RANKING_TIMEZONE` (`periods.rs`),
//!   sorted sets like `K` (their details are `K`'s), each expiring
//!   `RANKING_PERIOD_RETENTION_DAYS` after its period ends, or later if a process kept it
//!   longer: an expiry only grows;
//! - `{K}:periods`: the period boards' names, scored by their expiry, so a rebuild can replace
//!   them all;
//! - `{K}:hidden`: the members an operator hid (`moderation.rs`), loaded from Postgres, where
//!   they are recorded; its empty member `""` marks it as loaded. A script that writes the
//!   boards refuses to run without it (Redis lost it), and skips the members it names;
//! - `{K}:feed`: the feed of new entries, a capped Redis Stream written by the apply script, one
//!   entry per schedule entering the ranking, its ID the event's log position (`{tx_id}-{seq}`),
//!   or a `reset` for a change readers must read again (a backlog drained, a replay, a swap, a
//!   heal; one whose ID is not a log position names the last one announced in `after`). Every instance reads it (`stream.rs`), active or standing by: its live board and its
//!   read cache (`board_cache.rs`) follow the ranking through it alone, so every script that
//!   changes the ranking writes to it.
//!
//! The helper keys carry `K` in braces, so Redis Cluster puts them in `K`'s slot and one script
//! may touch them all.

use std::collections::HashMap;

use chrono::NaiveDate;
use redis::aio::ConnectionManager;
use redis::Script;
use serde::{Deserialize, Serialize};
use shared::events::ConcertSoldOut;
use uuid::Uuid;

use crate::log::LogPosition;
use crate::periods::{Period, PeriodKind, PeriodSettings};

/// The names of one ranking's keys.
#[derive(Debug, Clone)]
pub struct RankingKeys {
    pub ranking: String,
    details: String,
    position: String,
    applied_events: String,
    /// The feed of new entries: one per ranking, so a rebuild's keys share the live one (a
    /// rebuild restores, it never announces).
    feed: String,
    /// What a period board's name is appended to: `{K}:`, or a rebuild's own.
    boards: String,
    /// The period boards' names, scored by their expiry (Unix ms).
    periods: String,
    /// Whether changes to these keys are announced on the feed: not a rebuild's, which nobody
    /// reads until its swap (which announces it).
    announces: bool,
    /// The hidden members: one per ranking, so a rebuild skips what the live one hides.
    hidden: String,
}

impl RankingKeys {
    /// Keys for the ranking `name`. Braces are refused: they would change the hash slot.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() || name.contains(['{', '}']) {
            return Err(format!(
                "must be non-empty and contain no braces, got {name:?}"
            ));
        }
        Ok(Self {
            ranking: name.to_owned(),
            details: format!("{{{name}}}:details"),
            position: format!("{{{name}}}:position"),
            applied_events: format!("{{{name}}}:applied_events"),
            feed: format!("{{{name}}}:feed"),
            boards: format!("{{{name}}}:"),
            periods: format!("{{{name}}}:periods"),
            announces: true,
            hidden: format!("{{{name}}}:hidden"),
        })
    }

    /// Where one `replay --rebuild` builds the new ranking before swapping it in: keys of its
    /// own, so two rebuilds at once cannot mix. Its `position` key marks the rebuild as started:
    /// if Redis loses it (restarted mid-rebuild), the swap refuses a partial ranking.
    fn rebuild(&self, id: Uuid) -> Self {
        let name = &self.ranking;
        Self {
            ranking: format!("{{{name}}}:rebuild:{id}"),
            details: format!("{{{name}}}:rebuild:{id}:details"),
            position: format!("{{{name}}}:rebuild:{id}:started"),
            applied_events: format!("{{{name}}}:rebuild:{id}:applied_events"),
            feed: self.feed.clone(),
            boards: format!("{{{name}}}:rebuild:{id}:"),
            periods: format!("{{{name}}}:rebuild:{id}:periods"),
            announces: false,
            hidden: self.hidden.clone(),
        }
    }

    /// The board of `period`.
    pub fn board(&self, period: &Period) -> String {
        format!("{}{}", self.boards, period.name())
    }

    pub fn periods(&self) -> &str {
        &self.periods
    }

    pub fn hidden(&self) -> &str {
        &self.hidden
    }

    /// The keys every script is given, in this order: KEYS[1] to KEYS[4].
    fn all(&self) -> [&str; 4] {
        [
            &self.ranking,
            &self.details,
            &self.position,
            &self.applied_events,
        ]
    }

    pub fn details(&self) -> &str {
        &self.details
    }

    pub fn position(&self) -> &str {
        &self.position
    }

    pub fn applied_events(&self) -> &str {
        &self.applied_events
    }

    pub fn feed(&self) -> &str {
        &self.feed
    }
}

/// The sorted-set member for a schedule.
pub fn member(event: &ConcertSoldOut) -> String {
    format!(
        "concert:{}:schedule:{}",
        event.concert_id, event.schedule_id
    )
}

/// The ranking consumer's position as stored in Redis: the log it belongs to and the place in
/// it. A position of another log (a database dropped and created again) is not this log's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPosition {
    pub log_id: Uuid,
    pub position: LogPosition,
}

impl StoredPosition {
    fn encode(&self) -> String {
        format!("{}:{}", self.log_id, self.position)
    }

    fn decode(text: &str) -> Option<Self> {
        let (log_id, position) = text.split_once(':')?;
        Some(Self {
            log_id: log_id.parse().ok()?,
            position: position.parse().ok()?,
        })
    }
}

/// What Redis holds at `{K}:position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkPosition {
    /// Nothing: a new ranking, or Redis lost it.
    Missing,
    Stored(StoredPosition),
    /// Something this worker cannot resume from (unreadable, or not a place in the log as it
    /// is now); treated as missing, and compared as the text Redis holds.
    Unusable(String),
}

impl SinkPosition {
    fn from_reply(reply: Option<String>) -> Self {
        match reply {
            None => SinkPosition::Missing,
            // Only the exact text this worker writes counts as stored: the script compares
            // text, so a position written another way (by hand, in upper case) would fail
            // every compare-and-set.
            Some(text) => match StoredPosition::decode(&text) {
                Some(stored) if stored.encode() == text => SinkPosition::Stored(stored),
                _ => SinkPosition::Unusable(text),
            },
        }
    }

    /// The same text in Redis, marked as not to be resumed from.
    pub fn unusable(&self) -> Self {
        SinkPosition::Unusable(self.expected())
    }

    /// The exact text the apply script compares with.
    pub fn expected(&self) -> String {
        match self {
            SinkPosition::Missing => String::new(),
            SinkPosition::Stored(stored) => stored.encode(),
            SinkPosition::Unusable(text) => text.clone(),
        }
    }

    /// The position in `log_id`'s log; the start when there is none for that log.
    pub fn in_log(&self, log_id: Uuid) -> Option<LogPosition> {
        match self {
            SinkPosition::Stored(stored) if stored.log_id == log_id => Some(stored.position),
            _ => None,
        }
    }
}

impl std::fmt::Display for SinkPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkPosition::Missing => f.write_str("none"),
            SinkPosition::Stored(stored) => write!(f, "{}", stored.position),
            SinkPosition::Unusable(text) => write!(f, "unusable {text:?}"),
        }
    }
}

/// What the read API shows beside the score, stored in `{K}:details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Details {
    pub concert_id: i64,
    pub schedule_id: i64,
    pub concert_title: String,
    pub sale_started_at: chrono::DateTime<chrono::Utc>,
    pub sold_out_at: chrono::DateTime<chrono::Utc>,
}

impl From<&ConcertSoldOut> for Details {
    fn from(event: &ConcertSoldOut) -> Self {
        Self {
            concert_id: event.concert_id,
            schedule_id: event.schedule_id,
            concert_title: event.concert_title.clone(),
            sale_started_at: event.sale_started_at,
            sold_out_at: event.sold_out_at,
        }
    }
}

/// One event's writes: its member, score and details. The score comes from the payload alone,
/// so writing an event again can never change it.
fn writes(event: &ConcertSoldOut) -> (String, String, String) {
    (
        member(event),
        event.sold_out_seconds().to_string(),
        // Serialising a struct of plain fields cannot fail.
        serde_json::to_string(&Details::from(event)).unwrap_or_default(),
    )
}

/// The apply script's arguments for a batch, laid out as Redis takes them so the script passes
/// them on without building tables: (score, member) per event, then (member, details) per event,
/// then each event's feed ID (its log position), in log order.
fn apply_args(events: &[(LogPosition, &ConcertSoldOut)]) -> Vec<String> {
    let writes: Vec<_> = events.iter().map(|(_, event)| writes(event)).collect();
    let mut args = Vec::with_capacity(events.len() * 5);
    for (member, score, _) in &writes {
        args.push(score.clone());
        args.push(member.clone());
    }
    for (member, _, details) in writes {
        args.push(member);
        args.push(details);
    }
    args.extend(
        events
            .iter()
            .map(|(position, _)| FeedId::from(*position).to_string()),
    );
    args
}

/// The restore script's arguments: the count, then (member, score, details) per event (then the
/// boards' arguments, whether to announce, and the feed's cap).
fn restore_args(events: &[&ConcertSoldOut]) -> Vec<String> {
    let mut args = Vec::with_capacity(1 + events.len() * 3);
    args.push(events.len().to_string());
    for event in events {
        let (member, score, details) = writes(event);
        args.extend([member, score, details]);
    }
    args
}

/// The first key of a batch's period boards in a writing script's KEYS (1-based, as Lua counts).
const FIRST_BOARD_KEY: usize = 8;

/// The period boards a batch writes, laid out for `write_boards`: the boards' keys, each once
/// (KEYS[FIRST_BOARD_KEY..]); then the arguments: per event the KEYS index of its day, week and
/// month board (0 for one past retention: not written again), then per board its expiry (Unix
/// ms) and name.
#[derive(Debug, Default)]
struct Boards {
    keys: Vec<String>,
    args: Vec<String>,
}

fn boards<'e>(
    keys: &RankingKeys,
    settings: &PeriodSettings,
    events: impl ExactSizeIterator<Item = &'e ConcertSoldOut>,
) -> Boards {
    let now = chrono::Utc::now();
    let mut boards = Boards::default();
    // A batch's events mostly share their local date: each date's boards are worked out once
    // (names, expiries and keys are formatted strings, the costliest part of a batch's
    // arguments), and each event only looks its date up.
    let mut by_date: HashMap<NaiveDate, [String; 3]> = HashMap::new();
    // Each board once in KEYS, whichever dates share it (a week or month spans many).
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut expiries = Vec::new();
    boards.args.reserve(events.len() * 3);
    for event in events {
        let date = settings.local_date(event.sold_out_at);
        let slots = by_date.entry(date).or_insert_with(|| {
            PeriodKind::ALL.map(|kind| {
                let live = settings
                    .period(kind, date)
                    .and_then(|period| Some((settings.live_until(&period, now)?, period)));
                let key_index = match live {
                    Some((expiry, period)) => {
                        *by_key.entry(keys.board(&period)).or_insert_with_key(|key| {
                            boards.keys.push(key.clone());
                            expiries.extend([expiry.timestamp_millis().to_string(), period.name()]);
                            FIRST_BOARD_KEY + boards.keys.len() - 1
                        })
                    }
                    // Past retention, or beyond the calendar: no board.
                    None => 0,
                };
                key_index.to_string()
            })
        });
        boards.args.extend(slots.iter().cloned());
    }
    boards.args.extend(expiries);
    boards
}

// The scripts' Lua is in `ranking/lua/`, one file per constant below, each documented here.
// `Ranking::new` puts a script together from its helpers' files and its own, one after the
// other (the writing ones after `local FIRST_BOARD = …` and `local SWAP_BOARDS = …`, from the
// Rust constants of those names): so every file ends with a newline.

/// Checks that the ranking's keys hold what the scripts write, before any write: Redis does
/// not roll a script back, so an error halfway through would leave half a batch.
const CHECK_TYPES: &str = include_str!("ranking/lua/check_types.lua");

/// The period boards' and hidden members' helpers. A writing script's KEYS[6] is the list of
/// boards (`{K}:periods`), KEYS[7] the hidden members, KEYS[FIRST_BOARD..] the batch's boards
/// (`FIRST_BOARD` is [`FIRST_BOARD_KEY`], declared before the helpers).
/// `check_boards` checks their types before any write, and that the hidden members are loaded
/// (else an `UNLOADED` error: load them from Postgres and run the script again).
/// `hidden_members` is a lookup of the hidden members. `write_boards` writes the `count` events
/// not hidden on their boards (the arguments from ARGV[at] laid out by `boards`; `event(i)`
/// gives the i-th event's score and member) and sets each board's expiry; it returns per event
/// how many boards it changed. `write_boards_grouped` does the same in fewer commands and
/// returns the total.
const BOARDS: &str = include_str!("ranking/lua/boards.lua");

/// Writes the `count` events in ARGV[first..] (laid out by `apply_args`): absolute writes, so
/// writing an event again changes nothing. Batched commands, in chunks that stay within Lua's
/// stack (chunks of 1000 arguments keep (score, member) and (member, details) pairs together).
/// Returns the count and how many members or details it added or changed.
const WRITE_EVENTS: &str = include_str!("ranking/lua/write_events.lua");

/// The feed's helpers. Stream IDs (`ms-seq`, decimal, no leading zeros) are compared as numbers
/// written out, longer first: Lua's numbers are doubles and would round a large `tx_id`.
const FEED: &str = include_str!("ranking/lua/feed.lua");

/// The consumer's step: if the stored position is ARGV[1] (compare-and-set), writes the ARGV[4]
/// events of the batch and moves the position to ARGV[2], last. Returns {1} when applied,
/// {0, stored} when the position was not the expected one (another instance moved it, or Redis
/// lost it).
///
/// The events go on their period boards too (KEYS[6..], ARGV from 6 + 5 * ARGV[4]; see
/// `BOARDS`), in the same step. A hidden member is written on no board and not announced.
///
/// Then announces the events on the feed (KEYS[5], capped near ARGV[3] entries), each under its
/// log position with its rank after the batch, if that position is after the feed's last ID: a
/// heal or a resync that applies old events again (positions the feed has had) adds nothing, so
/// the script stays idempotent and a reader never sees an old entry as new. Log positions only
/// grow, so a new event's always is after, and the new ones are the batch's tail. More than
/// ARGV[5] new ones (a backlog drained) are announced as one `reset` entry instead, at the last
/// one's position: readers take a fresh snapshot, and the drain does not pay for entries no
/// board could show one by one. So are new ones whose IDs a `reset` took (`announce_reset`
/// after an earlier row of the same transaction): "new" means after the last position
/// announced, which a reset records, not after the feed's last ID. Old events that changed a board all the same (a heal into a
/// ranking that lost them) are announced as a `reset`: every reader's cache must forget the
/// boards it holds.
const APPLY: &str = include_str!("ranking/lua/apply.lua");

/// Replay: writes each of the ARGV[1] events' member, score and details (from ARGV[2], laid out
/// by `restore_args`) and its period boards (KEYS[6..], see `BOARDS`), whatever the position
/// says; a hidden member is skipped. Returns 1 for each event that changed the ranking or a
/// board (restored), 0 where they held it exactly (or it is hidden). If any did and the next to
/// last argument is '1' (the live ranking, not a rebuild nobody reads yet), announces a `reset`
/// on the feed (KEYS[5], capped near the last argument's count of entries).
const RESTORE: &str = include_str!("ranking/lua/restore.lua");

/// Swaps a finished rebuild in, if the live position is still ARGV[1] (the rebuild covers
/// exactly the events the live ranking had applied); else returns -1 and the rebuild catches
/// up first. Returns -2 if the rebuild's start marker is gone (Redis lost the rebuild). RENAME
/// replaces each live key in one step, so readers see the old ranking or the new one, never an
/// empty or partial one. Returns the new ranking's size.
///
/// The period boards go with it: the ARGV[4] live ones listed in KEYS[9] are replaced by the
/// ARGV[5] listed in the rebuild's KEYS[10]. Every board's key is declared (Redis Cluster
/// requires it): the live boards from KEYS[SWAP_BOARDS], then per rebuild board its key and the
/// live key it becomes; their names follow in ARGV from 6, live then rebuild, as the caller read
/// the lists. If either list changed since, returns -3 and nothing is written: read them again.
/// RENAME keeps a board's expiry; where the live board of the same name would outlive it, the
/// later expiry is kept (an expiry only grows). Then announces a `reset` on the feed (KEYS[11],
/// capped near ARGV[3] entries).
///
/// Members hidden while the rebuild ran (KEYS[12]) may be in its earlier pages: they are taken
/// out of every board of the rebuild before it goes live.
///
/// Every key's type is checked before the first write: Redis does not roll a script back, and
/// an error after the first RENAME would leave half a swap.
const SWAP: &str = include_str!("ranking/lua/swap.lua");

/// The first period board's key in the swap script's KEYS (1-based, as Lua counts).
const SWAP_BOARDS: usize = 13;

/// How often a swap reads the board lists again when they changed under it (a board expired
/// or was added between the read and the script) before giving up.
const SWAP_ATTEMPTS: usize = 10;

/// Loads the hidden members (KEYS[1]) from ARGV, unless they are loaded: a list loaded is kept,
/// since `ranking remove` and `restore` change it in Redis after Postgres. Returns 1 when it
/// loaded. A load adds to what a `remove` racing it added (neither is lost); a `restore` racing
/// a load (Redis just lost the list) may leave the entry hidden in Redis only, the safe side,
/// which `ranking restore` run again repairs.
const LOAD_HIDDEN: &str = include_str!("ranking/lua/load_hidden.lua");

/// Hides ARGV[1]: adds it to the hidden members (KEYS[3]) and takes it off the all-time board
/// (KEYS[1]), its details (KEYS[2]) and every period board (KEYS[6..]: the boards listed in
/// KEYS[5], whose names are ARGV[3..]); then announces a `reset` on the feed (KEYS[4], capped
/// near ARGV[2] entries), so every live board and read cache drops it. Returns 1 if it was on the
/// all-time board; -1, writing nothing, if the list of boards is no longer the one given (a
/// board added or expired since it was read): read it again and retry.
const HIDE: &str = include_str!("ranking/lua/hide.lua");

/// How many times [`Ranking::hide`] reads the list of period boards again when it changed under
/// it; a board is added or expires a few times a day.
const HIDE_TRIES: usize = 5;

/// A page of the ranking with its details, flat: how many entries score lower than the page's
/// first, then (member, score, details) per entry of every score the page holds, the whole
/// group of each: Redis orders equal scores by member (`concert:10:…` before `concert:9:…`),
/// and [`page`] orders and ranks them by their details instead.
const READ_PAGE: &str = include_str!("ranking/lua/read_page.lua");

/// A page of the ranking with its details, read in one atomic step.
const READ: &str = include_str!("ranking/lua/read.lua");

/// The top ARGV[1] entries and the feed's (KEYS[3]) last ID, in one atomic step: every entry
/// after that ID is one the page does not show yet.
const SNAPSHOT: &str = include_str!("ranking/lua/snapshot.lua");

/// The feed's (KEYS[1]) last ID.
const FEED_LAST: &str = include_str!("ranking/lua/feed_last.lua");

/// The feed's entries after ARGV[1], at most ARGV[2] of them: {1, entries} ({id, fields} each),
/// or {0, {}} when they cannot all be given (more than that, some trimmed away, or the feed is
/// behind ARGV[1]: Redis lost it); the reader then needs a snapshot.
const FEED_AFTER: &str = include_str!("ranking/lua/feed_after.lua");

/// About how many entries the feed keeps (`XADD … MAXLEN ~`): a reader that missed more gets a
/// snapshot instead.
pub const FEED_MAX_LEN: u64 = 1_000;

/// The most new entries one batch announces one by one; a batch with more (a backlog drained)
/// announces a `reset` instead. A consumer keeping up applies a few events per batch.
pub const FEED_ANNOUNCE_MAX: u64 = 50;

fn unexpected_reply(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, what))
}

/// Entries `offset..offset + limit` from what `read_page` returned: equal scores ordered by the
/// earlier `sold_out_at`, then schedule id, and sharing a rank (1, 2, 2, 4), as SPEC §6 reads.
fn page(flat: &[String], offset: u64, limit: u64) -> redis::RedisResult<Vec<Entry>> {
    let Some((lower, rows)) = flat.split_first() else {
        return Err(unexpected_reply("the page script returned nothing"));
    };
    let lower: u64 = lower
        .parse()
        .map_err(|_| unexpected_reply("the page script's count is not a number"))?;
    let mut entries: Vec<Entry> = rows
        .chunks_exact(3)
        .map(|row| Entry::new(0, &row[0], &row[1], &row[2]))
        .collect();
    entries.sort_by(|a, b| {
        a.sold_out_seconds
            .total_cmp(&b.sold_out_seconds)
            .then(a.sold_out_at.cmp(&b.sold_out_at))
            .then(a.schedule_id.cmp(&b.schedule_id))
            .then_with(|| a.member.cmp(&b.member))
    });
    // Ranks: one more than the entries with a lower score.
    let mut first_of_score = 0;
    for index in 0..entries.len() {
        if index > 0 && entries[index].sold_out_seconds != entries[index - 1].sold_out_seconds {
            first_of_score = index;
        }
        entries[index].rank = lower + first_of_score as u64 + 1;
    }
    let skip = offset.saturating_sub(lower) as usize;
    Ok(entries
        .into_iter()
        .skip(skip)
        .take(limit as usize)
        .collect())
}

/// An entry's ID on the feed: the log position of the event that made it (`{tx_id}-{seq}`), a
/// Redis Stream ID and the SSE `id:` a browser resumes from. Ordered as the log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedId {
    ms: u64,
    seq: u64,
}

impl FeedId {
    /// Before every entry: what a snapshot of an empty feed is at.
    pub const START: FeedId = FeedId { ms: 0, seq: 0 };
}

impl From<LogPosition> for FeedId {
    fn from(position: LogPosition) -> Self {
        // Positions are never negative (transaction ids and a sequence).
        Self {
            ms: position.tx_id.max(0) as u64,
            seq: position.seq.max(0) as u64,
        }
    }
}

impl std::fmt::Display for FeedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl std::str::FromStr for FeedId {
    type Err = String;

    /// Only the form this worker writes: `digits-digits`, as Redis would compare it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = || {
            let (ms, seq) = text.split_once('-')?;
            let digits = |part: &str| {
                (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| part.parse().ok())
                    .flatten()
            };
            Some(Self {
                ms: digits(ms)?,
                seq: digits(seq)?,
            })
        };
        parse().ok_or_else(|| format!("not a feed ID (digits-digits): {text:?}"))
    }
}

/// One entry of the feed, as the apply script writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEntry {
    /// A schedule entered the ranking.
    Entry(Announcement),
    /// Many entered at once (a backlog drained), through this ID: read a fresh snapshot.
    Reset(FeedId),
}

impl FeedEntry {
    /// From a stream entry's ID and fields; `None` for an entry written otherwise.
    pub fn parse(id: &str, fields: &[String]) -> Option<Self> {
        if fields.first().is_some_and(|field| field == "reset") {
            return Some(FeedEntry::Reset(id.parse().ok()?));
        }
        Announcement::parse(id, fields).map(FeedEntry::Entry)
    }

    pub fn id(&self) -> FeedId {
        match self {
            FeedEntry::Entry(announcement) => announcement.id,
            FeedEntry::Reset(id) => *id,
        }
    }
}

/// One entry of the feed: a schedule that entered the ranking, with its rank when it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    pub id: FeedId,
    pub entry: Entry,
}

impl Announcement {
    /// From a stream entry's ID and fields as the apply script writes them; `None` for an entry
    /// written otherwise.
    pub fn parse(id: &str, fields: &[String]) -> Option<Self> {
        let field = |name: &str| {
            fields
                .chunks_exact(2)
                .find(|pair| pair[0] == name)
                .map(|pair| pair[1].as_str())
        };
        Some(Self {
            id: id.parse().ok()?,
            entry: Entry::new(
                field("rank")?.parse().ok()?,
                field("member")?,
                field("score")?,
                field("details").unwrap_or_default(),
            ),
        })
    }
}

/// What the swap script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapResult {
    /// The rebuild is live; the new ranking's size.
    Swapped(u64),
    /// The live position moved while the rebuild ran: catch up, then try again.
    PositionMoved,
    /// The rebuild's keys are gone (Redis restarted mid-rebuild): nothing was swapped.
    RebuildLost,
    /// The lists of period boards changed under every attempt: nothing was swapped.
    BoardsKeptChanging,
}

/// A batch's apply-script keys and arguments, positions aside ([`Ranking::prepare`]).
#[derive(Debug)]
pub struct PreparedBatch {
    events: usize,
    /// The period boards the batch writes.
    board_keys: Vec<String>,
    /// The events' writes and feed IDs (`apply_args`), then their boards' (`boards`).
    args: Vec<String>,
}

/// What the apply script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyResult {
    /// The batch is written and the position moved.
    Applied,
    /// Nothing written: the stored position was not the one the batch starts from.
    PositionMoved(SinkPosition),
}

/// One ranked schedule as the read API and `top` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub rank: u64,
    pub member: String,
    pub concert_id: Option<i64>,
    pub schedule_id: Option<i64>,
    pub concert_title: Option<String>,
    pub sold_out_seconds: f64,
    pub sale_started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub sold_out_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Entry {
    /// From what Redis holds: the member, its score and its details (JSON; empty or unreadable
    /// when missing, then shown as nulls).
    fn new(rank: u64, member: &str, score: &str, details: &str) -> Self {
        let details: Option<Details> = serde_json::from_str(details).ok();
        Entry {
            rank,
            member: member.to_owned(),
            concert_id: details.as_ref().map(|d| d.concert_id),
            schedule_id: details.as_ref().map(|d| d.schedule_id),
            concert_title: details.as_ref().map(|d| d.concert_title.clone()),
            sold_out_seconds: score.parse().unwrap_or(f64::NAN),
            sale_started_at: details.as_ref().map(|d| d.sale_started_at),
            sold_out_at: details.as_ref().map(|d| d.sold_out_at),
        }
    }
}

/// Whether a writing script refused to run because the hidden members are not loaded (Redis
/// lost them): load them from Postgres (`moderation::load_hidden`) and run it again.
pub fn hidden_unloaded(error: &redis::RedisError) -> bool {
    error.code() == Some("UNLOADED")
}

/// The ranking: its keys and compiled scripts.
#[derive(Clone)]
pub struct Ranking {
    keys: RankingKeys,
    /// How events are placed on the period boards.
    periods: PeriodSettings,
    apply: std::sync::Arc<Script>,
    restore: std::sync::Arc<Script>,
    swap: std::sync::Arc<Script>,
    read: std::sync::Arc<Script>,
    snapshot: std::sync::Arc<Script>,
    feed_after: std::sync::Arc<Script>,
    feed_last: std::sync::Arc<Script>,
    load_hidden: std::sync::Arc<Script>,
    hide: std::sync::Arc<Script>,
}

impl Ranking {
    pub fn new(keys: RankingKeys) -> Self {
        let writer = |body: &str| {
            let first_board = format!(
                "local FIRST_BOARD = {FIRST_BOARD_KEY}\nlocal SWAP_BOARDS = {SWAP_BOARDS}\n"
            );
            Script::new(&format!(
                "{first_board}{CHECK_TYPES}{WRITE_EVENTS}{BOARDS}{FEED}{body}"
            ))
            .into()
        };
        Self {
            keys,
            periods: PeriodSettings::default(),
            apply: writer(APPLY),
            restore: writer(RESTORE),
            swap: writer(SWAP),
            read: Script::new(&format!("{READ_PAGE}{READ}")).into(),
            snapshot: Script::new(&format!("{FEED}{READ_PAGE}{SNAPSHOT}")).into(),
            feed_after: Script::new(&format!("{FEED}{FEED_AFTER}")).into(),
            feed_last: Script::new(&format!("{FEED}{FEED_LAST}")).into(),
            load_hidden: Script::new(LOAD_HIDDEN).into(),
            hide: Script::new(&format!("{FEED}{HIDE}")).into(),
        }
    }

    /// The same ranking with its period boards in `periods`' time zone and retention.
    pub fn with_periods(self, periods: PeriodSettings) -> Self {
        Self { periods, ..self }
    }

    pub fn key(&self) -> &str {
        &self.keys.ranking
    }

    pub fn periods(&self) -> &PeriodSettings {
        &self.periods
    }

    /// The key of the board for `period`, or the all-time board's.
    pub fn board_key(&self, period: Option<&Period>) -> String {
        period.map_or_else(
            || self.keys.ranking.clone(),
            |period| self.keys.board(period),
        )
    }

    /// The period boards `events` go on, as the writing scripts take them.
    fn boards<'e>(&self, events: impl ExactSizeIterator<Item = &'e ConcertSoldOut>) -> Boards {
        boards(&self.keys, &self.periods, events)
    }

    pub fn keys(&self) -> &RankingKeys {
        &self.keys
    }

    /// The consumer's position as Redis holds it.
    pub async fn position(
        &self,
        redis: &mut ConnectionManager,
    ) -> redis::RedisResult<SinkPosition> {
        let reply: Option<String> = redis::cmd("GET")
            .arg(&self.keys.position)
            .query_async(redis)
            .await?;
        Ok(SinkPosition::from_reply(reply))
    }

    /// Applies a batch (each event with its log position, in log order) and moves the position
    /// from `from` to `to` in one atomic step, if the position still is `from`; announces the
    /// events the feed has not had. One round trip, whatever the batch's size.
    pub async fn apply(
        &self,
        redis: &mut ConnectionManager,
        from: &SinkPosition,
        to: StoredPosition,
        events: &[(LogPosition, &ConcertSoldOut)],
    ) -> redis::RedisResult<ApplyResult> {
        self.apply_prepared(redis, from, to, &self.prepare(events))
            .await
    }

    /// The apply script's keys and arguments for a batch (each event with its log position, in
    /// log order), all but the positions: worked out while Redis still runs the batch before,
    /// since they cost the worker more than the script costs Redis.
    pub fn prepare(&self, events: &[(LogPosition, &ConcertSoldOut)]) -> PreparedBatch {
        let boards = self.boards(events.iter().map(|(_, event)| *event));
        let mut args = apply_args(events);
        args.extend(boards.args);
        PreparedBatch {
            events: events.len(),
            board_keys: boards.keys,
            args,
        }
    }

    /// [`Ranking::apply`] with the batch prepared.
    pub async fn apply_prepared(
        &self,
        redis: &mut ConnectionManager,
        from: &SinkPosition,
        to: StoredPosition,
        batch: &PreparedBatch,
    ) -> redis::RedisResult<ApplyResult> {
        let mut invocation = self.apply.prepare_invoke();
        for key in self.keys.all() {
            invocation.key(key);
        }
        invocation
            .key(&self.keys.feed)
            .key(&self.keys.periods)
            .key(&self.keys.hidden);
        for key in &batch.board_keys {
            invocation.key(key);
        }
        invocation
            .arg(from.expected())
            .arg(to.encode())
            .arg(FEED_MAX_LEN)
            .arg(batch.events)
            .arg(FEED_ANNOUNCE_MAX);
        for arg in &batch.args {
            invocation.arg(arg);
        }
        let (applied, stored): (i64, String) = invocation.invoke_async(redis).await?;
        Ok(if applied == 1 {
            ApplyResult::Applied
        } else {
            ApplyResult::PositionMoved(SinkPosition::from_reply(
                Some(stored).filter(|text| !text.is_empty()),
            ))
        })
    }

    /// Writes a batch whatever the position; `true` per event that changed the ranking.
    pub async fn restore(
        &self,
        redis: &mut ConnectionManager,
        events: &[&ConcertSoldOut],
    ) -> redis::RedisResult<Vec<bool>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let boards = self.boards(events.iter().copied());
        let mut invocation = self.restore.prepare_invoke();
        for key in self.keys.all() {
            invocation.key(key);
        }
        invocation
            .key(&self.keys.feed)
            .key(&self.keys.periods)
            .key(&self.keys.hidden);
        for key in &boards.keys {
            invocation.key(key);
        }
        for arg in restore_args(events).into_iter().chain(boards.args) {
            invocation.arg(arg);
        }
        invocation
            .arg(if self.keys.announces { "1" } else { "0" })
            .arg(FEED_MAX_LEN);
        let flags: Vec<i64> = invocation.invoke_async(redis).await?;
        Ok(flags.into_iter().map(|flag| flag == 1).collect())
    }

    /// `true` per event whose member, score or details differ from the ranking or its boards,
    /// hidden members aside (dry run).
    pub async fn differs(
        &self,
        redis: &mut ConnectionManager,
        events: &[&ConcertSoldOut],
    ) -> redis::RedisResult<Vec<bool>> {
        let boards = self.boards(events.iter().copied());
        let mut pipe = redis::pipe();
        for (i, event) in events.iter().enumerate() {
            pipe.sismember(&self.keys.hidden, member(event))
                .zscore(&self.keys.ranking, member(event))
                .hget(&self.keys.details, member(event));
            // The boards it belongs on; one past retention counts as held.
            for slot in &boards.args[3 * i..3 * i + 3] {
                match slot.parse::<usize>() {
                    Ok(index) if index >= FIRST_BOARD_KEY => {
                        pipe.zscore(&boards.keys[index - FIRST_BOARD_KEY], member(event))
                    }
                    _ => pipe.zscore(&self.keys.ranking, member(event)),
                };
            }
        }
        type Reply = (
            bool,
            Option<f64>,
            Option<String>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
        );
        let replies: Vec<Reply> = pipe.query_async(redis).await?;
        Ok(events
            .iter()
            .zip(replies)
            .map(|(event, (hidden, score, details, day, week, month))| {
                let expected = serde_json::to_string(&Details::from(*event)).unwrap_or_default();
                let score_is = |held: Option<f64>| held == Some(event.sold_out_seconds());
                // A hidden member is held as it should be: off the boards.
                !hidden
                    && (!score_is(score)
                        || !score_is(day)
                        || !score_is(week)
                        || !score_is(month)
                        || details.as_deref() != Some(expected.as_str()))
            })
            .collect())
    }

    /// Starts a rebuild: an empty ranking beside the live one, marked as started. Restore into
    /// it, then [`Self::swap_in`] (or [`Self::discard`] it).
    pub async fn begin_rebuild(
        &self,
        redis: &mut ConnectionManager,
    ) -> redis::RedisResult<Ranking> {
        let rebuild = Ranking {
            keys: self.keys.rebuild(Uuid::new_v4()),
            ..self.clone()
        };
        redis::cmd("SET")
            .arg(&rebuild.keys.position)
            .arg(chrono::Utc::now().to_rfc3339())
            .exec_async(redis)
            .await?;
        Ok(rebuild)
    }

    /// Deletes a rebuild that will not be swapped in, its period boards too.
    pub async fn discard(&self, redis: &mut ConnectionManager) -> redis::RedisResult<()> {
        let names: Vec<String> = redis::cmd("ZRANGE")
            .arg(&self.keys.periods)
            .arg(0)
            .arg(-1)
            .query_async(redis)
            .await?;
        let boards = names
            .iter()
            .map(|name| format!("{}{name}", self.keys.boards));
        redis::cmd("DEL")
            .arg(&self.keys.all()[..])
            .arg(&self.keys.periods)
            .arg(boards.collect::<Vec<_>>())
            .exec_async(redis)
            .await
    }

    /// Replaces this ranking with `rebuild` and sets the position to `to` in one atomic step,
    /// if the live position still is `live`.
    pub async fn swap_in(
        &self,
        redis: &mut ConnectionManager,
        rebuild: &Ranking,
        live: &SinkPosition,
        to: StoredPosition,
    ) -> redis::RedisResult<SwapResult> {
        for _ in 0..SWAP_ATTEMPTS {
            // The boards' keys go in KEYS, so the script gets them from the lists read here,
            // and refuses if the lists changed meanwhile.
            let (live_names, rebuild_names): (Vec<String>, Vec<String>) = redis::pipe()
                .zrange(&self.keys.periods, 0, -1)
                .zrange(&rebuild.keys.periods, 0, -1)
                .query_async(redis)
                .await?;
            let mut invocation = self.swap.prepare_invoke();
            for key in self.keys.all().into_iter().chain(rebuild.keys.all()) {
                invocation.key(key);
            }
            invocation
                .key(&self.keys.periods)
                .key(&rebuild.keys.periods)
                .key(&self.keys.feed)
                .key(&self.keys.hidden);
            for name in &live_names {
                invocation.key(format!("{}{name}", self.keys.boards));
            }
            for name in &rebuild_names {
                invocation
                    .key(format!("{}{name}", rebuild.keys.boards))
                    .key(format!("{}{name}", self.keys.boards));
            }
            invocation
                .arg(live.expected())
                .arg(to.encode())
                .arg(FEED_MAX_LEN)
                .arg(live_names.len())
                .arg(rebuild_names.len())
                .arg(&live_names)
                .arg(&rebuild_names);
            let size: i64 = invocation.invoke_async(redis).await?;
            return Ok(match size {
                -1 => SwapResult::PositionMoved,
                -2 => SwapResult::RebuildLost,
                -3 => continue,
                size => SwapResult::Swapped(size.max(0) as u64),
            });
        }
        Ok(SwapResult::BoardsKeptChanging)
    }

    /// Entries `offset..offset + limit` of the all-time board, fastest first.
    pub async fn top(
        &self,
        redis: &mut ConnectionManager,
        offset: u64,
        limit: u64,
    ) -> redis::RedisResult<Vec<Entry>> {
        self.top_of(redis, None, offset, limit).await
    }

    /// Entries `offset..offset + limit` of `period`'s board (the all-time board for `None`),
    /// fastest first, ordered and ranked as the all-time board is.
    pub async fn top_of(
        &self,
        redis: &mut ConnectionManager,
        period: Option<&Period>,
        offset: u64,
        limit: u64,
    ) -> redis::RedisResult<Vec<Entry>> {
        let flat: Vec<String> = self
            .read
            .key(self.board_key(period))
            .key(&self.keys.details)
            .arg(offset)
            .arg(limit)
            .invoke_async(redis)
            .await?;
        page(&flat, offset, limit)
    }

    /// The top `limit` entries and the feed's last ID, read together: the feed's entries after
    /// that ID are exactly those the snapshot does not hold.
    pub async fn snapshot(
        &self,
        redis: &mut ConnectionManager,
        limit: u64,
    ) -> redis::RedisResult<(FeedId, Vec<Entry>)> {
        let flat: Vec<String> = self
            .snapshot
            .key(&self.keys.ranking)
            .key(&self.keys.details)
            .key(&self.keys.feed)
            .arg(limit)
            .invoke_async(redis)
            .await?;
        let Some((last, page)) = flat.split_first() else {
            return Err(unexpected_reply("the snapshot script returned nothing"));
        };
        let last = last
            .parse()
            .map_err(|_| unexpected_reply("the feed's last ID is not a stream ID"))?;
        Ok((last, self::page(page, 0, limit)?))
    }

    /// The feed's last ID: every entry to come is after it.
    pub async fn feed_last(&self, redis: &mut ConnectionManager) -> redis::RedisResult<FeedId> {
        let last: String = self
            .feed_last
            .key(&self.keys.feed)
            .invoke_async(redis)
            .await?;
        last.parse()
            .map_err(|_| unexpected_reply("the feed's last ID is not a stream ID"))
    }

    /// The feed's entries after `after`, at most `limit`, oldest first; `None` when they cannot
    /// all be given (more than `limit`, some trimmed away, the feed lost them, or a `reset`).
    pub async fn feed_after(
        &self,
        redis: &mut ConnectionManager,
        after: FeedId,
        limit: u64,
    ) -> redis::RedisResult<Option<Vec<Announcement>>> {
        let (complete, entries): (i64, Vec<(String, Vec<String>)>) = self
            .feed_after
            .key(&self.keys.feed)
            .arg(after.to_string())
            .arg(limit)
            .invoke_async(redis)
            .await?;
        if complete != 1 {
            return Ok(None);
        }
        let mut missed = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            match FeedEntry::parse(&id, &fields) {
                Some(FeedEntry::Entry(announcement)) => missed.push(announcement),
                Some(FeedEntry::Reset(_)) => return Ok(None),
                None => {}
            }
        }
        Ok(Some(missed))
    }

    /// Loads the hidden members, unless Redis holds them already; `true` when it loaded.
    pub async fn load_hidden(
        &self,
        redis: &mut ConnectionManager,
        members: &[String],
    ) -> redis::RedisResult<bool> {
        let mut invocation = self.load_hidden.prepare_invoke();
        invocation.key(&self.keys.hidden);
        for member in members {
            invocation.arg(member);
        }
        let loaded: i64 = invocation.invoke_async(redis).await?;
        Ok(loaded == 1)
    }

    /// Hides `member` on every board, every period board listed in `{K}:periods` (whatever
    /// time zone placed them there), and tells the feed's readers; `true` if it was on the
    /// all-time board.
    pub async fn hide(
        &self,
        redis: &mut ConnectionManager,
        member: &str,
    ) -> redis::RedisResult<bool> {
        for _ in 0..HIDE_TRIES {
            // Every key a script touches is declared (Redis Cluster), so the boards are read
            // first; the script checks the list is still this one.
            let names: Vec<String> = redis::cmd("ZRANGE")
                .arg(&self.keys.periods)
                .arg(0)
                .arg(-1)
                .query_async(redis)
                .await?;
            let mut invocation = self.hide.prepare_invoke();
            invocation
                .key(&self.keys.ranking)
                .key(&self.keys.details)
                .key(&self.keys.hidden)
                .key(&self.keys.feed)
                .key(&self.keys.periods);
            for name in &names {
                invocation.key(format!("{}{name}", self.keys.boards));
            }
            invocation.arg(member).arg(FEED_MAX_LEN);
            for name in &names {
                invocation.arg(name);
            }
            let ranked: i64 = invocation.invoke_async(redis).await?;
            if ranked >= 0 {
                return Ok(ranked == 1);
            }
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "the list of period boards kept changing while hiding an entry",
        )))
    }

    /// Whether the writers skip `member`.
    pub async fn is_hidden(
        &self,
        redis: &mut ConnectionManager,
        member: &str,
    ) -> redis::RedisResult<bool> {
        redis::cmd("SISMEMBER")
            .arg(&self.keys.hidden)
            .arg(member)
            .query_async(redis)
            .await
    }

    /// Lets the writers put `member` on the boards again.
    pub async fn unhide(
        &self,
        redis: &mut ConnectionManager,
        member: &str,
    ) -> redis::RedisResult<()> {
        redis::cmd("SREM")
            .arg(&self.keys.hidden)
            .arg(member)
            .exec_async(redis)
            .await
    }

    /// How many schedules are ranked.
    pub async fn size(&self, redis: &mut ConnectionManager) -> redis::RedisResult<u64> {
        redis::cmd("ZCARD")
            .arg(&self.keys.ranking)
            .query_async(redis)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_keys_share_the_ranking_keys_hash_slot() {
        let keys = RankingKeys::parse("concert:schedule:ranking").unwrap();
        assert_eq!(keys.details, "{concert:schedule:ranking}:details");
        assert_eq!(keys.position, "{concert:schedule:ranking}:position");
        let id = Uuid::nil();
        assert_eq!(
            keys.rebuild(id).ranking,
            format!("{{concert:schedule:ranking}}:rebuild:{id}")
        );
    }

    #[test]
    fn feed_ids_are_log_positions_ordered_as_the_log() {
        let keys = RankingKeys::parse("concert:schedule:ranking").unwrap();
        assert_eq!(keys.feed(), "{concert:schedule:ranking}:feed");
        let id = FeedId::from(LogPosition { tx_id: 812, seq: 4 });
        assert_eq!(id.to_string(), "812-4");
        assert_eq!("812-4".parse::<FeedId>(), Ok(id));
        assert!("9-9".parse::<FeedId>().unwrap() < "10-0".parse().unwrap());
        assert!("812-4".parse::<FeedId>().unwrap() < "812-10".parse().unwrap());
        for bad in ["", "812", "812-", "-4", "+1-2", "1-2-3", "a-1", " 1-2"] {
            assert!(bad.parse::<FeedId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_script_part_ends_a_line_so_parts_join() {
        for part in [
            CHECK_TYPES,
            BOARDS,
            WRITE_EVENTS,
            FEED,
            APPLY,
            RESTORE,
            SWAP,
            LOAD_HIDDEN,
            HIDE,
            READ_PAGE,
            READ,
            SNAPSHOT,
            FEED_LAST,
            FEED_AFTER,
        ] {
            assert!(part.ends_with('\n'), "{part}");
        }
    }

    #[test]
    fn braces_in_the_ranking_key_are_refused() {
        assert!(RankingKeys::parse("a{b}").is_err());
        assert!(RankingKeys::parse("").is_err());
    }
}

#[cfg(test)]
mod position_tests {
    use super::*;

    #[test]
    fn a_stored_position_round_trips_and_belongs_to_its_log() {
        let stored = StoredPosition {
            log_id: "6f1c1a2e-3b4d-4c5e-8f90-a1b2c3d4e5f6".parse().unwrap(),
            position: LogPosition { tx_id: 812, seq: 4 },
        };
        let read = SinkPosition::from_reply(Some(stored.encode()));
        assert_eq!(read, SinkPosition::Stored(stored));
        assert_eq!(read.in_log(stored.log_id), Some(stored.position));
        assert_eq!(read.in_log(Uuid::new_v4()), None, "another log's position");
        assert_eq!(SinkPosition::from_reply(None).expected(), "");
        assert!(matches!(
            SinkPosition::from_reply(Some("garbage".into())),
            SinkPosition::Unusable(_)
        ));
        let upper = stored.encode().to_uppercase();
        assert_eq!(
            SinkPosition::from_reply(Some(upper.clone())).expected(),
            upper,
            "a position written another way is compared as written"
        );
    }
}
