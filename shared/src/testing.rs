//! Helpers for the test suites of every crate (feature `test-support`, enabled only by their
//! dev-dependencies, so no service binary carries them).

use std::time::Duration;

/// Polls `condition` every 20 ms until it holds; panics naming `deadline` if it does not hold
/// by then. For effects that happen a moment after the action that causes them.
pub async fn eventually(deadline: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + deadline;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < give_up,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
