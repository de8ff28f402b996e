//! Health kept over time: each sample joins the current minute's and quarter hour's point;
//! a finished point is written through [`HealthLog`] (the store) and old points are pruned,
//! so the history survives restarts and covers a month, at a few hundred kilobytes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::mpsc;
use valor_protocol::StoreFailure;
use valor_protocol::health::{HealthPoint, Resolution};

use crate::monitor::AlertRecord;
use crate::sample::Sample;

/// Where points are kept (the store implements it; [`InMemoryHealthLog`] serves tests).
#[async_trait]
pub trait HealthLog: Send + Sync {
    async fn put(&self, resolution: Resolution, point: &HealthPoint) -> Result<(), StoreFailure>;
    async fn prune(&self, resolution: Resolution, before_ms: u64) -> Result<usize, StoreFailure>;
    async fn points(
        &self,
        resolution: Resolution,
        since_ms: u64,
    ) -> Result<Vec<HealthPoint>, StoreFailure>;
    async fn put_alert(&self, record: &AlertRecord) -> Result<(), StoreFailure>;
    /// Newest first.
    async fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>, StoreFailure>;
    async fn prune_alerts(&self, before_ms: u64) -> Result<usize, StoreFailure>;
}

/// A health log in memory (tests).
#[derive(Default)]
pub struct InMemoryHealthLog {
    points: Mutex<BTreeMap<(u8, u64), HealthPoint>>,
    alerts: Mutex<BTreeMap<(u64, String), AlertRecord>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl HealthLog for InMemoryHealthLog {
    async fn put(&self, resolution: Resolution, point: &HealthPoint) -> Result<(), StoreFailure> {
        lock(&self.points).insert((resolution.byte(), point.at_ms), point.clone());
        Ok(())
    }

    async fn prune(&self, resolution: Resolution, before_ms: u64) -> Result<usize, StoreFailure> {
        let mut points = lock(&self.points);
        let before = points.len();
        points.retain(|(r, at), _| *r != resolution.byte() || *at >= before_ms);
        Ok(before - points.len())
    }

    async fn points(
        &self,
        resolution: Resolution,
        since_ms: u64,
    ) -> Result<Vec<HealthPoint>, StoreFailure> {
        Ok(lock(&self.points)
            .iter()
            .filter(|((r, at), _)| *r == resolution.byte() && *at >= since_ms)
            .map(|(_, p)| p.clone())
            .collect())
    }

    async fn put_alert(&self, record: &AlertRecord) -> Result<(), StoreFailure> {
        let key = (record.raised_ms, format!("{:?}", record.alert.kind));
        lock(&self.alerts).insert(key, record.clone());
        Ok(())
    }

    async fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>, StoreFailure> {
        Ok(lock(&self.alerts)
            .values()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn prune_alerts(&self, before_ms: u64) -> Result<usize, StoreFailure> {
        let mut alerts = lock(&self.alerts);
        let before = alerts.len();
        alerts.retain(|(at, _), _| *at >= before_ms);
        Ok(before - alerts.len())
    }
}

/// How long past alerts are kept, as the quarter-hour points.
const ALERTS_KEPT_MS: u64 = 30 * 24 * 3_600_000;

/// A point being summed up.
#[derive(Debug, Clone)]
struct Bucket {
    at_ms: u64,
    score_sum: u64,
    worst_score: u8,
    rss_mb: f32,
    cpu_sum: f64,
    system_memory_percent: f32,
    children: u16,
    disk_free_mb: f32,
    queued: u16,
    samples: u16,
}

impl Bucket {
    fn starting(at_ms: u64) -> Bucket {
        Bucket {
            at_ms,
            score_sum: 0,
            worst_score: 100,
            rss_mb: 0.0,
            cpu_sum: 0.0,
            system_memory_percent: 0.0,
            children: 0,
            disk_free_mb: 0.0,
            queued: 0,
            samples: 0,
        }
    }

    fn add(&mut self, sample: &Sample, score: u8) {
        self.score_sum += u64::from(score);
        self.worst_score = self.worst_score.min(score);
        self.rss_mb = self.rss_mb.max(sample.rss_mb() as f32);
        self.cpu_sum += sample.cpu_percent;
        self.system_memory_percent = self
            .system_memory_percent
            .max(sample.system_memory_used_percent() as f32);
        self.children = self
            .children
            .max(u16::try_from(sample.children).unwrap_or(u16::MAX));
        if let Some((free, _)) = sample.disk {
            let free_mb = (free / (1024 * 1024)) as f32;
            // The least free: what runs out first.
            self.disk_free_mb = if self.disk_free_mb == 0.0 {
                free_mb
            } else {
                self.disk_free_mb.min(free_mb)
            };
        }
        self.queued = self
            .queued
            .max(u16::try_from(sample.queued).unwrap_or(u16::MAX));
        self.samples = self.samples.saturating_add(1);
    }

    fn point(&self) -> HealthPoint {
        let samples = u64::from(self.samples.max(1));
        HealthPoint {
            at_ms: self.at_ms,
            score: u8::try_from(self.score_sum / samples).unwrap_or(100),
            worst_score: self.worst_score,
            rss_mb: self.rss_mb,
            cpu_percent: (self.cpu_sum / samples as f64) as f32,
            system_memory_percent: self.system_memory_percent,
            children: self.children,
            disk_free_mb: self.disk_free_mb,
            queued: self.queued,
            samples: self.samples,
        }
    }
}

/// Sums samples into points and keeps them. Samples come in from synchronous code (the
/// monitor's tick); the writes go to the log from a task of their own, in order.
pub struct HealthRecorder {
    log: Arc<dyn HealthLog>,
    open: Mutex<[Option<Bucket>; 2]>,
    writes: mpsc::Sender<Write>,
}

/// One write for the log, in the order it was made.
enum Write {
    Point(Resolution, HealthPoint),
    Prune(Resolution, u64),
    Alert(Box<AlertRecord>),
    PruneAlerts(u64),
    /// Every write before it is done.
    Flushed(tokio::sync::oneshot::Sender<()>),
}

/// Writes that may wait for the log (a tick writes at most four).
const WRITES_WAITING: usize = 256;

impl HealthRecorder {
    /// A recorder writing to `log` from a task of its own (spawned here: call it on the
    /// runtime); the task ends with the recorder.
    pub fn start(log: Arc<dyn HealthLog>) -> HealthRecorder {
        let (writes, mut pending) = mpsc::channel(WRITES_WAITING);
        let writer = Arc::clone(&log);
        tokio::spawn(async move {
            while let Some(write) = pending.recv().await {
                let done = match write {
                    Write::Point(resolution, point) => writer.put(resolution, &point).await,
                    Write::Prune(resolution, before) => {
                        writer.prune(resolution, before).await.map(|_| ())
                    }
                    Write::Alert(record) => writer.put_alert(&record).await,
                    Write::PruneAlerts(before) => writer.prune_alerts(before).await.map(|_| ()),
                    Write::Flushed(done) => {
                        let _ = done.send(());
                        Ok(())
                    }
                };
                if let Err(e) = done {
                    tracing::warn!(error = %e, "cannot keep the health history");
                }
            }
        });
        HealthRecorder {
            log,
            open: Mutex::new([None, None]),
            writes,
        }
    }

    fn write(&self, write: Write) {
        if self.writes.try_send(write).is_err() {
            tracing::warn!("the health history is behind; a point or alert was not kept");
        }
    }

    /// Waits until every write made so far is in the log.
    pub async fn flushed(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.writes.send(Write::Flushed(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// Adds a sample (with its score). A sample in a new span writes the finished point of the
    /// span before and prunes what is past keeping. The open point is written as it reaches
    /// 1, 2, 4, 8... samples: a restart loses less than half of an open span, and a sled store
    /// is not rewritten on every tick.
    pub fn add(&self, sample: &Sample, score: u8) {
        let at_ms = sample.taken_at.saturating_mul(1000);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for (slot, resolution) in open.iter_mut().zip(Resolution::ALL) {
            let start = at_ms - at_ms % resolution.span_ms();
            if let Some(done) = slot.take_if(|b| b.at_ms != start) {
                self.keep(resolution, &done);
                let past = start.saturating_sub(resolution.kept_ms());
                self.write(Write::Prune(resolution, past));
            }
            let bucket = slot.get_or_insert_with(|| Bucket::starting(start));
            bucket.add(sample, score);
            if bucket.samples.is_power_of_two() {
                self.keep(resolution, bucket);
            }
        }
    }

    fn keep(&self, resolution: Resolution, bucket: &Bucket) {
        self.write(Write::Point(resolution, bucket.point()));
    }

    /// Keeps an alert as it is raised, changes or clears; a new one prunes those past keeping.
    pub fn keep_alert(&self, record: &AlertRecord) {
        self.write(Write::Alert(Box::new(record.clone())));
        if record.cleared_ms.is_none() {
            let past = record.raised_ms.saturating_sub(ALERTS_KEPT_MS);
            self.write(Write::PruneAlerts(past));
        }
    }

    /// Kept alerts, newest first, at most `limit`.
    pub async fn alerts(&self, limit: usize) -> Vec<AlertRecord> {
        self.flushed().await;
        self.log.alerts(limit).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read past alerts");
            Vec::new()
        })
    }

    /// Closes the alerts a previous run left active: nobody watches them any more, so they end
    /// at `now_ms`, marked as ended by the restart.
    pub async fn close_left_open(&self, now_ms: u64, limit: usize) {
        for mut record in self.alerts(limit).await {
            if record.cleared_ms.is_none() {
                record.cleared_ms = Some(now_ms);
                record.ended_by_restart = true;
                self.keep_alert(&record);
            }
        }
        self.flushed().await;
    }

    /// Points of `resolution` since `since_ms`, oldest first.
    pub async fn points(&self, resolution: Resolution, since_ms: u64) -> Vec<HealthPoint> {
        self.flushed().await;
        self.log
            .points(resolution, since_ms)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the health history");
                Vec::new()
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample(taken_at: u64, rss_mb: u64, cpu: f64) -> Sample {
        Sample {
            taken_at,
            rss_bytes: rss_mb * 1024 * 1024,
            cpu_percent: cpu,
            system_memory_total_bytes: 100,
            system_memory_used_bytes: 40,
            load_average: [0.0; 3],
            children: 1,
            oldest_child_secs: None,
            stale_children: 0,
            disk: None,
            queued: 0,
        }
    }

    #[tokio::test]
    async fn samples_become_minute_and_quarter_points_that_survive_a_restart() {
        let log = Arc::new(InMemoryHealthLog::default());
        let start = 1_800_000_000; // a quarter hour's start, in seconds
        {
            let recorder = HealthRecorder::start(log.clone());
            for i in 0..60 {
                // Every 30 s for half an hour; score falls with time.
                recorder.add(&sample(start + i * 30, 100 + i, 10.0), 100 - i as u8);
            }
            recorder.flushed().await;
        }
        let recorder = HealthRecorder::start(log);
        let minutes = recorder.points(Resolution::Minute, 0).await;
        assert_eq!(minutes.len(), 30);
        assert_eq!(minutes[0].at_ms, start * 1000);
        assert_eq!(
            (minutes[0].samples, minutes[0].score, minutes[0].worst_score),
            (2, 99, 99)
        );
        assert_eq!(minutes[0].rss_mb, 101.0);
        assert_eq!(minutes[0].system_memory_percent, 40.0);
        let quarters = recorder.points(Resolution::QuarterHour, 0).await;
        assert_eq!(quarters.len(), 2);
        assert_eq!(quarters[0].samples, 30, "finished: all its samples");
        assert_eq!(quarters[0].cpu_percent, 10.0);
        assert_eq!(
            quarters[1].samples, 16,
            "open: kept at 1, 2, 4, 8, 16 samples"
        );
    }

    #[tokio::test]
    async fn points_past_keeping_are_pruned() {
        let recorder = HealthRecorder::start(Arc::new(InMemoryHealthLog::default()));
        let start = 1_800_000_000; // a quarter hour's start
        recorder.add(&sample(start, 100, 1.0), 90);
        // A day and a minute later: the first minute is past keeping, its quarter is not.
        recorder.add(&sample(start + 86_400 + 60, 100, 1.0), 90);
        let minutes = recorder.points(Resolution::Minute, 0).await;
        assert_eq!(minutes.len(), 1, "{minutes:?}");
        assert_eq!(recorder.points(Resolution::QuarterHour, 0).await.len(), 2);
    }
}
