//! The `healthcheck` subcommand both binaries offer: asks the service's own `/readyz`, for a
//! container's HEALTHCHECK (the slim runtime image has no curl).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How long the check waits for an answer: an orchestrator's own timeout is usually a few
/// seconds, and a service slower than this is not ready.
const TIMEOUT: Duration = Duration::from_secs(3);

/// `Ok` when the service listening on `listen` answers `/readyz` with 200; else why not.
/// A wildcard listen address (`0.0.0.0`) is asked on loopback.
pub async fn check_ready(listen: SocketAddr) -> Result<(), String> {
    let mut target = listen;
    if target.ip().is_unspecified() {
        target.set_ip(Ipv4Addr::LOCALHOST.into());
    }
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|error| error.to_string())?;
    let response = client
        .get(format!("http://{target}/readyz"))
        .send()
        .await
        .map_err(|error| format!("no answer from http://{target}/readyz: {error}"))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(format!("http://{target}/readyz answered {status}: {body}"))
}
