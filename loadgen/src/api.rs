//! A typed client for the HTTP APIs of payment-svc (SPEC §3) and ranking-worker (SPEC §6).

use chrono::{DateTime, Utc};
use payment_svc::auth::{mint_token, JwtSecret};
use payment_svc::domain::{Role, UserId};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// What a call can end in besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The service answered with a problem+json body.
    #[error("{status} {code}: {detail}")]
    Problem {
        status: u16,
        code: String,
        detail: String,
    },
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
}

impl ApiError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Problem { code, .. } => Some(code),
            Self::Transport(_) => None,
        }
    }
}

/// A caller of payment-svc: a token signed for one user.
#[derive(Debug, Clone)]
pub struct Caller {
    token: String,
}

/// Mints tokens the way `payment-svc token` does, with the same secret as the service.
pub struct Tokens(JwtSecret);

impl Tokens {
    pub fn new(secret: &str) -> anyhow::Result<Self> {
        JwtSecret::parse(secret)
            .map(Self)
            .map_err(|error| anyhow::anyhow!("JWT_SECRET {error}"))
    }

    pub fn caller(&self, user_id: i64, role: Role) -> anyhow::Result<Caller> {
        let user = UserId::parse(user_id).map_err(anyhow::Error::msg)?;
        let token = mint_token(&self.0, user, role, std::time::Duration::from_secs(3600))?;
        Ok(Caller { token })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Schedule {
    pub schedule_id: i64,
    pub sale_starts_at: DateTime<Utc>,
    pub seat_count: i64,
    pub price: i64,
    /// Only in `GET /concerts/{id}`.
    #[serde(default)]
    pub sold_out_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Concert {
    pub concert_id: i64,
    pub title: String,
    pub schedules: Vec<Schedule>,
}

#[derive(Debug, Deserialize)]
pub struct Reservation {
    pub reservation_id: Uuid,
}

#[derive(Debug, Deserialize)]
pub struct Payment {
    pub schedule_sold_out: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RankingEntry {
    pub rank: u64,
    pub member: String,
    pub concert_id: i64,
    pub schedule_id: i64,
    pub concert_title: Option<String>,
    pub sold_out_seconds: f64,
    pub sale_started_at: Option<DateTime<Utc>>,
    pub sold_out_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct RankingPage {
    entries: Vec<RankingEntry>,
}

/// The planned schedule of a new concert.
pub struct NewSchedule {
    pub starts_at: DateTime<Utc>,
    pub sale_starts_at: DateTime<Utc>,
    pub seat_count: i64,
    pub price: i64,
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    payment_url: String,
    ranking_url: String,
}

impl Api {
    pub fn new(payment_url: &str, ranking_url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            payment_url: payment_url.trim_end_matches('/').to_owned(),
            ranking_url: ranking_url.trim_end_matches('/').to_owned(),
        }
    }

    pub async fn create_concert(
        &self,
        admin: &Caller,
        title: &str,
        schedules: &[NewSchedule],
    ) -> Result<Concert, ApiError> {
        let schedules: Vec<Value> = schedules
            .iter()
            .map(|s| {
                json!({ "starts_at": s.starts_at, "sale_starts_at": s.sale_starts_at,
                        "seat_count": s.seat_count, "price": s.price })
            })
            .collect();
        let body = json!({ "title": title, "schedules": schedules });
        self.post(admin, "/admin/concerts", &body, None).await
    }

    pub async fn concert(&self, concert_id: i64) -> Result<Concert, ApiError> {
        let url = format!("{}/concerts/{concert_id}", self.payment_url);
        decode(self.http.get(url).send().await?).await
    }

    pub async fn charge(&self, caller: &Caller, amount: i64) -> Result<Value, ApiError> {
        let body = json!({ "amount": amount });
        self.post(caller, "/points/charge", &body, Some(Uuid::new_v4()))
            .await
    }

    pub async fn hold(
        &self,
        caller: &Caller,
        schedule_id: i64,
        seat_no: i64,
    ) -> Result<Reservation, ApiError> {
        let body = json!({ "schedule_id": schedule_id, "seat_no": seat_no });
        self.post(caller, "/reservations", &body, None).await
    }

    pub async fn pay(&self, caller: &Caller, reservation_id: Uuid) -> Result<Payment, ApiError> {
        let body = json!({ "reservation_id": reservation_id });
        self.post(caller, "/payments", &body, Some(Uuid::new_v4()))
            .await
    }

    /// The whole ranking, page by page, fastest first.
    pub async fn ranking(&self) -> Result<Vec<RankingEntry>, ApiError> {
        const PAGE: usize = 100;
        let mut entries = Vec::new();
        loop {
            let url = format!(
                "{}/rankings/sold-out?limit={PAGE}&offset={}",
                self.ranking_url,
                entries.len()
            );
            let page: RankingPage = decode(self.http.get(url).send().await?).await?;
            let last = page.entries.len() < PAGE;
            entries.extend(page.entries);
            if last {
                return Ok(entries);
            }
        }
    }

    async fn post<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        path: &str,
        body: &Value,
        idempotency_key: Option<Uuid>,
    ) -> Result<T, ApiError> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.payment_url))
            .bearer_auth(&caller.token)
            .json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key.to_string());
        }
        decode(request.send().await?).await
    }
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ApiError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response.json().await?);
    }
    let problem: Value = response.json().await.unwrap_or_default();
    let text = |field: &str| problem[field].as_str().unwrap_or("").to_owned();
    Err(ApiError::Problem {
        status: status.as_u16(),
        code: text("code"),
        detail: text("detail"),
    })
}
