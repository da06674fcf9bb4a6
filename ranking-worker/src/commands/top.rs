//! `top`: the ranking as a table.

use std::time::Duration;

use crate::ranking::Entry;

pub fn render(key: &str, entries: &[Entry]) -> String {
    if entries.is_empty() {
        return format!("the ranking {key} is empty");
    }
    // The score in seconds is exact; the duration beside it is for reading.
    let durations: Vec<String> = entries
        .iter()
        .map(|entry| {
            let millis = (entry.sold_out_seconds * 1000.0).round().max(0.0) as u64;
            humantime::format_duration(Duration::from_millis(millis)).to_string()
        })
        .collect();
    let duration_width = durations.iter().map(String::len).max().unwrap_or(0).max(11);
    let member_width = entries.iter().map(|e| e.member.len()).max().unwrap_or(0);
    let mut out = format!(
        "{:>4}  {:<duration_width$}  {:>14}  {:<member_width$}  TITLE\n",
        "RANK", "SOLD OUT IN", "SECONDS", "MEMBER"
    );
    for (entry, duration) in entries.iter().zip(&durations) {
        out.push_str(&format!(
            "{:>4}  {:<duration_width$}  {:>14.3}  {:<member_width$}  {}\n",
            entry.rank,
            duration,
            entry.sold_out_seconds,
            entry.member,
            entry.concert_title.as_deref().unwrap_or("-"),
        ));
    }
    out.trim_end().to_owned()
}
