//! Spend counters (`valor_core::budget::SpendLog`): one record per period and scope
//! (`day:2026-12-08:chat:42`), added to with compare-and-swap (several writers, no lost
//! update); periods older than 400 days go as new ones are written.

use async_trait::async_trait;
use valor_core::budget::SpendLog;
use valor_protocol::StoreFailure;
use valor_protocol::budget::Spent;

use crate::store::{decode, encode};
use crate::{Store, StoreError};

impl Store {
    /// Changes one counter with `change`, retried until no other writer came between.
    fn update_spend(
        &self,
        counter: &str,
        mut change: impl FnMut(&mut Spent),
    ) -> Result<Spent, StoreError> {
        loop {
            let old = self.spend.get(counter.as_bytes())?;
            let mut spent: Spent = match &old {
                Some(bytes) => decode("spend", bytes)?,
                None => Spent::default(),
            };
            change(&mut spent);
            let swapped =
                self.spend
                    .compare_and_swap(counter.as_bytes(), old, Some(encode(&spent)))?;
            if swapped.is_ok() {
                return Ok(spent);
            }
        }
    }

    fn spend_counters(&self, counters: &[String]) -> Result<Vec<Spent>, StoreError> {
        counters
            .iter()
            .map(|c| match self.spend.get(c.as_bytes())? {
                Some(bytes) => decode("spend", &bytes),
                None => Ok(Spent::default()),
            })
            .collect()
    }

    fn spend_prefixed(&self, prefix: &str) -> Result<Vec<(String, Spent)>, StoreError> {
        self.spend
            .scan_prefix(prefix.as_bytes())
            .map(|entry| {
                let (key, bytes) = entry?;
                Ok((
                    String::from_utf8_lossy(&key).into_owned(),
                    decode("spend", &bytes)?,
                ))
            })
            .collect()
    }

    /// Days older than 400 go (months and windows stay small: one per scope each).
    fn forget_old_spend(&self, today: &str) -> Result<(), StoreError> {
        let cutoff = valor_protocol::time::civil_date(
            valor_protocol::time::now_ms().saturating_sub(400 * 86_400_000),
        );
        if today <= cutoff.as_str() {
            return Ok(());
        }
        let old: Vec<sled::IVec> = self
            .spend
            .range(b"day:".as_slice()..format!("day:{cutoff}").as_bytes())
            .keys()
            .take(256)
            .collect::<Result<_, _>>()?;
        for key in old {
            self.spend.remove(key)?;
        }
        Ok(())
    }

    /// Every counter (dumps).
    pub fn all_spend(&self) -> Result<Vec<(String, Spent)>, StoreError> {
        self.spend_prefixed("")
    }

    /// Loads a dumped counter as it was.
    pub fn load_spend(&self, counter: &str, spent: &Spent) -> Result<(), StoreError> {
        self.spend.insert(counter.as_bytes(), encode(spent))?;
        Ok(())
    }
}

#[async_trait]
impl SpendLog for Store {
    async fn add_spend(
        &self,
        counters: &[String],
        usd: f64,
        tokens: u64,
    ) -> Result<(), StoreFailure> {
        let counters = counters.to_vec();
        self.blocking(move |s| {
            for counter in &counters {
                s.update_spend(counter, |spent| {
                    spent.usd += usd;
                    spent.tokens += tokens;
                })?;
            }
            let today = valor_protocol::time::civil_date(valor_protocol::time::now_ms());
            s.forget_old_spend(&today)
        })
        .await?;
        Ok(self.commit().await?)
    }

    async fn spent(&self, counters: &[String]) -> Result<Vec<Spent>, StoreFailure> {
        let counters = counters.to_vec();
        Ok(self.blocking(move |s| s.spend_counters(&counters)).await?)
    }

    async fn allow_more(
        &self,
        counter: &str,
        usd: f64,
        tokens: u64,
    ) -> Result<Spent, StoreFailure> {
        let counter = counter.to_owned();
        let spent = (self.blocking(move |s| {
            s.update_spend(&counter, |spent| {
                spent.allowed_usd += usd;
                spent.allowed_tokens += tokens;
            })
        }))
        .await?;
        self.commit().await?;
        Ok(spent)
    }

    async fn mark_told(&self, counter: &str, reached: bool) -> Result<bool, StoreFailure> {
        let counter = counter.to_owned();
        let first = (self.blocking(move |s| {
            let before = s.spend_counters(std::slice::from_ref(&counter))?;
            let was = before
                .first()
                .is_some_and(|b| if reached { b.stopped } else { b.warned });
            if was {
                return Ok(false);
            }
            // Set by compare-and-swap: of two nodes marking at once, one sees it set.
            let mut first = false;
            s.update_spend(&counter, |spent| {
                let flag = if reached {
                    &mut spent.stopped
                } else {
                    &mut spent.warned
                };
                first = !*flag;
                *flag = true;
            })?;
            Ok::<bool, StoreError>(first)
        }))
        .await?;
        self.commit().await?;
        Ok(first)
    }

    async fn spend_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Spent)>, StoreFailure> {
        let prefix = prefix.to_owned();
        Ok(self.blocking(move |s| s.spend_prefixed(&prefix)).await?)
    }
}
