//! Live pages without polling: each source the pages show (turns, health, jobs, alerts, logs)
//! has a version that moves when it changes ([`Pulse`]); a page's stream waits for a version it
//! depends on to move, renders only the fragments of that source, and sends a fragment only
//! when its text changed. Nobody watching costs nothing; an idle page costs a `ping` every
//! [`PING_EVERY`] (so its status chip can say how fresh it is).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// What a page's fragments are made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Turns started, progressing, ended (and what they cost).
    Turns,
    /// Samples and the parts' health.
    Health,
    /// Job runs recorded.
    Jobs,
    /// Alerts raised, changed, cleared.
    Alerts,
}

impl Topic {
    pub const ALL: [Topic; 4] = [Topic::Turns, Topic::Health, Topic::Jobs, Topic::Alerts];

    fn index(self) -> usize {
        match self {
            Topic::Turns => 0,
            Topic::Health => 1,
            Topic::Jobs => 2,
            Topic::Alerts => 3,
        }
    }
}

/// A version per topic.
pub type Versions = [u64; 4];

/// The versions of what the pages show; clones share them.
#[derive(Clone)]
pub struct Pulse {
    versions: Arc<watch::Sender<Versions>>,
    /// Cancelled when Valor stops: every page's stream ends (an open page must not hold the
    /// server's graceful shutdown), and the page says "reconnecting…".
    closing: tokio_util::sync::CancellationToken,
}

impl Default for Pulse {
    fn default() -> Self {
        Pulse {
            versions: Arc::new(watch::channel([0; 4]).0),
            closing: tokio_util::sync::CancellationToken::new(),
        }
    }
}

impl Pulse {
    /// Ends every page's stream (Valor is stopping).
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Until the streams are to end.
    pub async fn closed(&self) {
        self.closing.cancelled().await;
    }

    /// `topic` changed.
    pub fn bump(&self, topic: Topic) {
        self.versions
            .send_modify(|v| v[topic.index()] = v[topic.index()].wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<Versions> {
        self.versions.subscribe()
    }

    /// Bumps `topic` whenever `source` moves, until the source is gone.
    pub fn follow<T: Send + Sync + 'static>(&self, topic: Topic, mut source: watch::Receiver<T>) {
        let pulse = self.clone();
        tokio::spawn(async move {
            while source.changed().await.is_ok() {
                pulse.bump(topic);
            }
        });
    }
}

/// The topics whose versions differ between `seen` and `now`.
pub fn moved(seen: &Versions, now: &Versions) -> Vec<Topic> {
    Topic::ALL
        .into_iter()
        .filter(|t| seen[t.index()] != now[t.index()])
        .collect()
}

/// An idle stream says it is alive this often.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// Renders of one stream are at least this far apart (a burst of changes is one render).
pub const SETTLE: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_followed_source_bumps_its_topic_only() {
        let pulse = Pulse::default();
        let (tx, rx) = watch::channel(0_u64);
        pulse.follow(Topic::Jobs, rx);
        let mut watching = pulse.subscribe();
        let seen = *watching.borrow_and_update();
        tx.send_replace(1);
        watching.changed().await.unwrap();
        let now = *watching.borrow_and_update();
        assert_eq!(moved(&seen, &now), vec![Topic::Jobs]);
        pulse.bump(Topic::Turns);
        pulse.bump(Topic::Turns);
        assert_eq!(
            moved(&now, &watching.borrow_and_update()),
            vec![Topic::Turns]
        );
    }
}
