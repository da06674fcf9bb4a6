//! A consumer's health as this instance sees it, shared between its loop and the HTTP API
//! (`GET /consumers`), and reported to Postgres for `status` run from anywhere.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Whether this instance holds the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds the consumer and moves its position.
    Active,
    /// Waits to take over from the active instance.
    Standby,
    /// Not running (shut down).
    Stopped,
}

/// What the consumer is doing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum State {
    Running,
    /// Retrying with backoff: the sink or the log is unavailable.
    Paused {
        reason: String,
        since: DateTime<Utc>,
    },
    /// Standing by or stopped.
    Idle,
}

impl State {
    /// The name stored in `outbox_consumers.state`.
    pub fn name(&self) -> &'static str {
        match self {
            State::Running => "running",
            State::Paused { .. } => "paused",
            State::Idle => "stopped",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub name: String,
    pub role: Role,
    #[serde(flatten)]
    pub state: State,
    /// The sink's position as this instance last knew it.
    pub position: Option<String>,
}

/// A consumer's health, cheap to clone and share.
#[derive(Debug, Clone)]
pub struct ConsumerHealth(Arc<Mutex<Health>>);

impl ConsumerHealth {
    pub fn new(name: &str) -> Self {
        Self(Arc::new(Mutex::new(Health {
            name: name.to_owned(),
            role: Role::Standby,
            state: State::Idle,
            position: None,
        })))
    }

    pub fn snapshot(&self) -> Health {
        self.lock().clone()
    }

    pub fn set_role(&self, role: Role) {
        self.lock().role = role;
        metrics::gauge!("consumer_active", "consumer" => self.name())
            .set(if role == Role::Active { 1.0 } else { 0.0 });
    }

    /// Sets the state; `true` if it changed (in kind: a paused consumer paused for another
    /// reason is still paused).
    pub fn set_state(&self, state: State) -> bool {
        let mut health = self.lock();
        let changed = health.state.name() != state.name();
        if changed {
            health.state = state;
        }
        changed
    }

    pub fn set_position(&self, position: String) {
        self.lock().position = Some(position);
    }

    pub fn name(&self) -> String {
        self.lock().name.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        // A panic while holding this lock cannot leave the plain data inconsistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
