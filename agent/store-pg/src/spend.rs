//! Spend counters on PostgreSQL: every node adds to the same rows (an upsert adds in the
//! database, so two nodes' runs both count), and a notice is marked sent once across nodes.

use async_trait::async_trait;
use tokio_postgres::Row;
use valor_core::budget::SpendLog;
use valor_protocol::StoreFailure;
use valor_protocol::budget::Spent;

use crate::error::PgError;
use crate::pool::{PgStore, db_i64};

const COLUMNS: &str = "counter, usd, tokens, allowed_usd, allowed_tokens, warned, stopped";

fn spent_of(row: &Row) -> Result<(String, Spent), PgError> {
    Ok((
        row.try_get(0)?,
        Spent {
            usd: row.try_get(1)?,
            tokens: u64::try_from(row.try_get::<_, i64>(2)?).unwrap_or(0),
            allowed_usd: row.try_get(3)?,
            allowed_tokens: u64::try_from(row.try_get::<_, i64>(4)?).unwrap_or(0),
            warned: row.try_get(5)?,
            stopped: row.try_get(6)?,
        },
    ))
}

impl PgStore {
    /// Every counter (dumps).
    pub async fn all_spend(&self) -> Result<Vec<(String, Spent)>, PgError> {
        let client = self.client().await?;
        let rows = (client.query(
            &format!("SELECT {COLUMNS} FROM spend ORDER BY counter"),
            &[],
        ))
        .await?;
        rows.iter().map(spent_of).collect()
    }

    /// Loads a dumped counter as it was.
    pub async fn load_spend(&self, counter: &str, spent: &Spent) -> Result<(), PgError> {
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "INSERT INTO spend ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (counter) DO UPDATE SET usd = $2, tokens = $3,
                     allowed_usd = $4, allowed_tokens = $5, warned = $6, stopped = $7"
                ),
                &[
                    &counter,
                    &spent.usd,
                    &db_i64(spent.tokens),
                    &spent.allowed_usd,
                    &db_i64(spent.allowed_tokens),
                    &spent.warned,
                    &spent.stopped,
                ],
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SpendLog for PgStore {
    async fn add_spend(
        &self,
        counters: &[String],
        usd: f64,
        tokens: u64,
    ) -> Result<(), StoreFailure> {
        let client = self.client().await?;
        let counters: Vec<&str> = counters.iter().map(String::as_str).collect();
        client
            .execute(
                "INSERT INTO spend (counter, usd, tokens) SELECT c, $2, $3 FROM unnest($1::text[]) c
                 ON CONFLICT (counter) DO UPDATE
                 SET usd = spend.usd + excluded.usd, tokens = spend.tokens + excluded.tokens",
                &[&counters, &usd, &db_i64(tokens)],
            )
            .await
            .map_err(PgError::from)?;
        Ok(())
    }

    async fn spent(&self, counters: &[String]) -> Result<Vec<Spent>, StoreFailure> {
        let client = self.client().await?;
        let names: Vec<&str> = counters.iter().map(String::as_str).collect();
        let rows = client
            .query(
                &format!("SELECT {COLUMNS} FROM spend WHERE counter = ANY($1)"),
                &[&names],
            )
            .await
            .map_err(PgError::from)?;
        let mut found = std::collections::HashMap::new();
        for row in &rows {
            let (counter, spent) = spent_of(row)?;
            found.insert(counter, spent);
        }
        Ok(counters
            .iter()
            .map(|c| found.get(c).copied().unwrap_or_default())
            .collect())
    }

    async fn allow_more(
        &self,
        counter: &str,
        usd: f64,
        tokens: u64,
    ) -> Result<Spent, StoreFailure> {
        let client = self.client().await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO spend (counter, allowed_usd, allowed_tokens) VALUES ($1, $2, $3)
                     ON CONFLICT (counter) DO UPDATE
                     SET allowed_usd = spend.allowed_usd + excluded.allowed_usd,
                         allowed_tokens = spend.allowed_tokens + excluded.allowed_tokens
                     RETURNING {COLUMNS}"
                ),
                &[&counter, &usd, &db_i64(tokens)],
            )
            .await
            .map_err(PgError::from)?;
        Ok(spent_of(&row)?.1)
    }

    async fn mark_told(&self, counter: &str, reached: bool) -> Result<bool, StoreFailure> {
        let client = self.client().await?;
        let flag = if reached { "stopped" } else { "warned" };
        // One statement: of two nodes marking at once, one changes the row.
        let changed = client
            .execute(
                &format!(
                    "INSERT INTO spend (counter, {flag}) VALUES ($1, true)
                     ON CONFLICT (counter) DO UPDATE SET {flag} = true WHERE NOT spend.{flag}"
                ),
                &[&counter],
            )
            .await
            .map_err(PgError::from)?;
        Ok(changed == 1)
    }

    async fn spend_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Spent)>, StoreFailure> {
        let client = self.client().await?;
        // The prefix is matched as text, not as a pattern (a `%` in it is a `%`).
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM spend WHERE left(counter, length($1)) = $1 ORDER BY counter"
                ),
                &[&prefix],
            )
            .await
            .map_err(PgError::from)?;
        Ok(rows.iter().map(spent_of).collect::<Result<_, _>>()?)
    }
}
