//! `top`: the ranking as a table.

use crate::ranking::Entry;

pub fn render(key: &str, entries: &[Entry]) -> String {
    if entries.is_empty() {
        return format!("the ranking {key} is empty");
    }
    let mut out = format!(
        "{:>4}  {:>12}  {:<32}  TITLE\n",
        "RANK", "SOLD OUT IN", "MEMBER"
    );
    for entry in entries {
        out.push_str(&format!(
            "{:>4}  {:>11.3}s  {:<32}  {}\n",
            entry.rank,
            entry.sold_out_seconds,
            entry.member,
            entry.concert_title.as_deref().unwrap_or("-"),
        ));
    }
    out.trim_end().to_owned()
}
