//! Helpers for the test suites of every crate (feature `test-support`, enabled only by their
//! dev-dependencies, so no service binary carries them).

use std::time::Duration;

use serde_json::{json, Value};

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

/// How `instance` violates `schema`, a schema of the OpenAPI `document` (formats included).
pub fn violations(document: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    // The document itself is the root the schema's $refs point into.
    let mut root = document.clone();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["allOf"] = json!([schema]);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap();
    validator
        .iter_errors(instance)
        .map(|error| format!("{} at {}", error, error.instance_path))
        .collect()
}
