//! `payment-svc healthcheck`, the images' HEALTHCHECK: exit 0 only when the service is ready.

use std::process::Command;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::TestApp;

fn healthcheck(addr: String) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_payment-svc"))
        .arg("healthcheck")
        .env_clear()
        .env("HTTP_ADDR", addr)
        .output()
        .unwrap()
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn healthcheck_exits_0_only_when_the_service_is_ready(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let ready = tokio::task::spawn_blocking(move || healthcheck(addr))
        .await
        .unwrap();
    assert!(ready.status.success(), "{ready:?}");

    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let down = tokio::task::spawn_blocking(move || healthcheck(nobody))
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8(down.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("unhealthy: "), "{stderr}");
}
