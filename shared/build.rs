//! `sqlx::migrate!` embeds `migrations/` at compile time but does not tell cargo to watch the
//! folder: without this, a new migration file is not picked up until something else in this
//! crate changes.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
