//! The monitor's health history (`valor_monitor::history::HealthLog`): points a minute and a
//! quarter hour, and alerts.

use async_trait::async_trait;
use valor_monitor::history::HealthLog;
use valor_monitor::monitor::AlertRecord;
use valor_protocol::StoreFailure;
use valor_protocol::health::{HealthPoint, Resolution};

use crate::Store;

#[async_trait]
impl HealthLog for Store {
    async fn put(&self, resolution: Resolution, point: &HealthPoint) -> Result<(), StoreFailure> {
        let point = point.clone();
        Ok(self
            .blocking(move |s| s.put_health_point(resolution, &point))
            .await?)
    }

    async fn prune(&self, resolution: Resolution, before_ms: u64) -> Result<usize, StoreFailure> {
        Ok(self
            .blocking(move |s| s.prune_health(resolution, before_ms))
            .await?)
    }

    async fn points(
        &self,
        resolution: Resolution,
        since_ms: u64,
    ) -> Result<Vec<HealthPoint>, StoreFailure> {
        Ok(self
            .blocking(move |s| s.health_points(resolution, since_ms))
            .await?)
    }

    async fn put_alert(&self, record: &AlertRecord) -> Result<(), StoreFailure> {
        let record = record.clone();
        Ok(self
            .blocking(move |s| {
                let kind = format!("{:?}", record.alert.kind);
                s.put_alert(record.raised_ms, &kind, &record)
            })
            .await?)
    }

    async fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>, StoreFailure> {
        Ok(self.blocking(move |s| s.alerts(limit)).await?)
    }

    async fn prune_alerts(&self, before_ms: u64) -> Result<usize, StoreFailure> {
        Ok(self.blocking(move |s| s.prune_alerts(before_ms)).await?)
    }
}
