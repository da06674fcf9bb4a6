//! `status`: the outbox backlog and the ranking's size.

use redis::aio::ConnectionManager;
use serde::Serialize;
use sqlx::PgPool;

use crate::queue::{self, Backlog};
use crate::ranking::Ranking;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub backlog: Backlog,
    pub ranking_key: String,
    pub ranking_size: u64,
}

pub async fn status(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
) -> anyhow::Result<Status> {
    Ok(Status {
        backlog: queue::backlog(pool).await?,
        ranking_key: ranking.key().to_owned(),
        ranking_size: ranking.size(redis).await?,
    })
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = &self.backlog;
        writeln!(f, "pending             {}", b.pending)?;
        writeln!(f, "retrying            {}", b.retrying)?;
        writeln!(f, "processing          {}", b.processing)?;
        writeln!(f, "dead                {}", b.dead)?;
        match b.oldest_ready_age_seconds {
            Some(age) => writeln!(f, "oldest ready event  {age:.3} s")?,
            None => writeln!(f, "oldest ready event  -")?,
        }
        write!(
            f,
            "ranking size        {} ({})",
            self.ranking_size, self.ranking_key
        )
    }
}
