//! Health kept over time: the monitor's samples, downsampled to one point a minute (kept a
//! day) and one every fifteen minutes (kept thirty days), so the daydream's chart and the
//! dashboard see more than the last hour and a restart loses nothing.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;
use crate::store::{Store, decode, encode};
pub use valor_protocol::health::{HealthPoint, Resolution};

fn key(resolution: Resolution, at_ms: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = resolution.byte();
    key[1..].copy_from_slice(&at_ms.to_be_bytes());
    key
}

/// The first key byte of alert records (points start with 1 or 15).
const ALERT: u8 = b'A';

fn alert_key(raised_ms: u64, kind: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + kind.len());
    key.push(ALERT);
    key.extend_from_slice(&raised_ms.to_be_bytes());
    key.extend_from_slice(kind.as_bytes());
    key
}

impl Store {
    /// Keeps a point (replacing one at the same time and resolution).
    pub fn put_health_point(
        &self,
        resolution: Resolution,
        point: &HealthPoint,
    ) -> Result<(), StoreError> {
        self.health
            .insert(key(resolution, point.at_ms), encode(point))?;
        Ok(())
    }

    /// Points of `resolution` from `since_ms` on, oldest first.
    pub fn health_points(
        &self,
        resolution: Resolution,
        since_ms: u64,
    ) -> Result<Vec<HealthPoint>, StoreError> {
        self.health
            .range(key(resolution, since_ms)..=key(resolution, u64::MAX))
            .values()
            .map(|v| decode("health point", &v?))
            .collect()
    }

    /// Drops points of `resolution` older than `before_ms`; returns how many.
    pub fn prune_health(
        &self,
        resolution: Resolution,
        before_ms: u64,
    ) -> Result<usize, StoreError> {
        let old: Vec<sled::IVec> = self
            .health
            .range(key(resolution, 0)..key(resolution, before_ms))
            .keys()
            .collect::<Result<_, _>>()?;
        for k in &old {
            self.health.remove(k)?;
        }
        Ok(old.len())
    }

    /// Keeps an alert's record, keyed by when it was raised and its kind (replacing the one
    /// kept before for the same alert, as it changes severity or clears).
    pub fn put_alert<T: Serialize>(
        &self,
        raised_ms: u64,
        kind: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        self.health
            .insert(alert_key(raised_ms, kind), encode(record))?;
        Ok(())
    }

    /// Kept alert records, newest first, at most `limit`.
    pub fn alerts<T: DeserializeOwned>(&self, limit: usize) -> Result<Vec<T>, StoreError> {
        self.health
            .scan_prefix([ALERT])
            .values()
            .rev()
            .take(limit)
            .map(|v| decode("alert", &v?))
            .collect()
    }

    /// Drops alert records raised before `before_ms`; returns how many.
    pub fn prune_alerts(&self, before_ms: u64) -> Result<usize, StoreError> {
        let old: Vec<sled::IVec> = self
            .health
            .range(alert_key(0, "")..alert_key(before_ms, ""))
            .keys()
            .collect::<Result<_, _>>()?;
        for k in &old {
            self.health.remove(k)?;
        }
        Ok(old.len())
    }

    /// Bytes of keys and values the health history holds.
    pub fn health_bytes(&self) -> u64 {
        self.health
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn point(at_ms: u64) -> HealthPoint {
        HealthPoint {
            at_ms,
            score: 90,
            worst_score: 80,
            rss_mb: 120.5,
            cpu_percent: 3.0,
            system_memory_percent: 40.0,
            children: 2,
            disk_free_mb: 0.0,
            queued: 0,
            samples: 2,
        }
    }

    #[test]
    fn points_are_kept_per_resolution_in_order_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        for minute in (0..10).rev() {
            store
                .put_health_point(Resolution::Minute, &point(minute * 60_000))
                .unwrap();
        }
        store
            .put_health_point(Resolution::QuarterHour, &point(0))
            .unwrap();
        let minutes = store.health_points(Resolution::Minute, 120_000).unwrap();
        assert_eq!(minutes.len(), 8);
        assert!(minutes.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        assert_eq!(store.prune_health(Resolution::Minute, 300_000).unwrap(), 5);
        assert_eq!(store.health_points(Resolution::Minute, 0).unwrap().len(), 5);
        assert_eq!(
            store.health_points(Resolution::QuarterHour, 0).unwrap(),
            [point(0)]
        );
        drop(store);
        // A restart keeps them.
        let store = Store::open(&dir.path().join("store")).unwrap();
        assert_eq!(store.health_points(Resolution::Minute, 0).unwrap().len(), 5);
    }

    #[test]
    fn alerts_are_kept_newest_first_replaced_as_they_change_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        store.put_alert(1_000, "memory", &"raised").unwrap();
        store.put_alert(2_000, "cpu", &"raised").unwrap();
        store.put_alert(1_000, "memory", &"cleared").unwrap();
        store
            .put_health_point(Resolution::Minute, &point(5_000))
            .unwrap();
        let kept: Vec<String> = store.alerts(10).unwrap();
        assert_eq!(kept, ["raised", "cleared"], "newest first, one per alert");
        assert_eq!(store.health_points(Resolution::Minute, 0).unwrap().len(), 1);
        assert_eq!(store.prune_alerts(1_500).unwrap(), 1);
        assert_eq!(store.alerts::<String>(10).unwrap(), ["raised"]);
        assert_eq!(
            store.health_points(Resolution::Minute, 0).unwrap().len(),
            1,
            "points stay"
        );
    }
}
