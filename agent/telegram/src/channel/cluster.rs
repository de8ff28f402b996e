//! The channel on several machines. Ingress: the node that leads the poller role calls
//! `getUpdates` (a 409 from Telegram means another poller: it steps down) and accepts each
//! update into the shared queue. Worker: it claims chats with waiting updates, answers each
//! chat's updates in order under the chat's lease (renewed while it works; when it is lost the
//! running turn stops and the chat's next worker answers), and lets an idle chat go after
//! `idle_keep`. `LISTEN/NOTIFY` wakes workers at once; a tick is the safety net.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use teloxide::RequestError;
use teloxide::payloads::GetUpdatesSetters as _;
use teloxide::prelude::Requester as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::TelegramChannel;
use crate::cluster::{ChatQueue, ClaimedChat, Leadership, QueueWake};

/// Past a lease's end before claiming the chat (the database's clock decides).
const CLAIM_MARGIN: Duration = Duration::from_millis(20);

/// How this node takes part in the cluster.
#[derive(Clone)]
pub struct ClusterSetup {
    /// The shared queue (ingress accepts into it through the store; /stop travels on it).
    pub queue: Arc<dyn ChatQueue>,
    /// Some: this node takes updates in while it leads the poller role.
    pub leadership: Option<Arc<dyn Leadership>>,
    /// This node answers the chats it claims.
    pub works: bool,
    /// Chats this worker holds at most.
    pub max_chats: usize,
    /// An idle chat is kept (its warm Claude process reused) this long.
    pub idle_keep: Duration,
    /// Idle chats this worker keeps at most (one more lets the longest idle go): each renews
    /// its lease, and beyond the warm processes kept, keeping one buys nothing.
    pub max_idle: usize,
    /// How often a held chat's lease is renewed (well within the lease).
    pub renew_every: Duration,
    /// How often a worker looks for work without being woken, and a follower asks to lead.
    pub tick: Duration,
    /// A leader's long poll lasts at most this (its lease must outlast a poll).
    pub leader_poll_secs: u32,
}

/// A chat this worker holds: what wakes its runner, and whether a turn of it runs (idle
/// chats are kept warm but do not count against `max_chats`).
pub(super) struct HeldChat {
    notify: Notify,
    busy: std::sync::atomic::AtomicBool,
    /// Since when it has been idle (`None`: a turn of it runs).
    idle_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// Tells an idle chat to let go (too many idle chats held).
    evict: Notify,
}

impl HeldChat {
    fn new() -> HeldChat {
        HeldChat {
            notify: Notify::new(),
            busy: std::sync::atomic::AtomicBool::new(true),
            idle_since: std::sync::Mutex::new(None),
            evict: Notify::new(),
        }
    }

    fn set_idle(&self, idle: bool) {
        self.busy.store(!idle, std::sync::atomic::Ordering::Release);
        *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = idle.then(std::time::Instant::now);
    }

    fn idle_since(&self) -> Option<std::time::Instant> {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// How one leader's poll ended.
enum Polled {
    Taken,
    /// Telegram said another poller runs (409).
    Conflict,
    Failed,
    Shutdown,
}

impl TelegramChannel {
    pub(super) async fn run_cluster(
        &self,
        cluster: ClusterSetup,
        shutdown: &CancellationToken,
    ) -> Result<(), super::ChannelError> {
        let working = shutdown.child_token();
        if cluster.works {
            tokio::spawn(self.clone().work(cluster.clone(), working.clone()));
        }
        match (&cluster.leadership, self.inner.webhook.clone()) {
            (Some(leadership), Some(webhook)) => {
                // Every ingress node takes the posts; the leader registers the webhook.
                let secret = webhook.secret.clone().ok_or_else(|| {
                    super::ChannelError::Webhook(
                        "several ingress nodes share one webhook secret: set TELEGRAM_WEBHOOK_SECRET".to_owned(),
                    )
                })?;
                let listener = tokio::net::TcpListener::bind(webhook.bind)
                    .await
                    .map_err(|e| {
                        super::ChannelError::Webhook(format!(
                            "cannot listen on {}: {e}",
                            webhook.bind
                        ))
                    })?;
                let registering = working.clone();
                let (channel, leader, tick) = (self.clone(), Arc::clone(leadership), cluster.tick);
                let (hook, key) = (webhook.clone(), secret.clone());
                tokio::spawn(async move {
                    channel
                        .register_while_leading(leader.as_ref(), &hook, &key, tick, &registering)
                        .await;
                    leader.resign().await;
                });
                self.serve_webhook_posts(listener, secret, shutdown).await?;
            }
            (Some(leadership), None) => {
                self.register_commands().await;
                self.poll_while_leading(&cluster, leadership.as_ref(), shutdown)
                    .await;
                leadership.resign().await;
            }
            (None, _) => shutdown.cancelled().await,
        }
        working.cancel();
        Ok(())
    }

    async fn poll_while_leading(
        &self,
        cluster: &ClusterSetup,
        leadership: &dyn Leadership,
        shutdown: &CancellationToken,
    ) {
        let mut leading = false;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            if !leadership.lead().await {
                if leading {
                    tracing::warn!("lost the poller's lease; another node polls Telegram");
                    leading = false;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(cluster.tick) => continue,
                }
            }
            if !leading {
                // Where the previous leader stopped: the offset is shared.
                match self.inner.store.last_update().await {
                    Ok(last) => {
                        self.inner
                            .last_update
                            .fetch_max(last, std::sync::atomic::Ordering::AcqRel);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the update offset; not polling");
                        leadership.resign().await;
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(cluster.tick) => continue,
                        }
                    }
                }
                tracing::info!("leading the poller: this node takes Telegram's updates in");
                leading = true;
            }
            match self.poll_once(cluster.leader_poll_secs, shutdown).await {
                Polled::Taken => {}
                Polled::Shutdown => return,
                Polled::Conflict => {
                    tracing::warn!("Telegram says another poller runs (409); stepping down");
                    leadership.resign().await;
                    leading = false;
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(cluster.tick) => {}
                    }
                }
                Polled::Failed => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(cluster.tick) => {}
                    }
                }
            }
        }
    }

    /// Registers the webhook each time this node becomes the webhook's leader.
    async fn register_while_leading(
        &self,
        leadership: &dyn Leadership,
        webhook: &super::Webhook,
        secret: &str,
        tick: Duration,
        shutdown: &CancellationToken,
    ) {
        let mut registered = false;
        loop {
            if leadership.lead().await {
                if !registered {
                    match self.register_webhook(webhook, secret).await {
                        Ok(()) => {
                            self.register_commands().await;
                            registered = true;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot register the webhook"),
                    }
                }
            } else {
                registered = false;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// One `getUpdates`, each update taken in.
    async fn poll_once(&self, timeout_secs: u32, shutdown: &CancellationToken) -> Polled {
        let last = self
            .inner
            .last_update
            .load(std::sync::atomic::Ordering::Acquire);
        let offset = i32::try_from(last + 1).unwrap_or(i32::MAX);
        let timeout = timeout_secs.min(self.inner.poll_timeout);
        let request = self.inner.bot.get_updates().offset(offset).timeout(timeout);
        let updates = tokio::select! {
            () = shutdown.cancelled() => return Polled::Shutdown,
            updates = request.into_future() => updates,
        };
        match updates {
            Ok(updates) => {
                let mut all_taken = true;
                for update in updates {
                    all_taken &= self.take_or_set_aside(update, shutdown).await;
                }
                if all_taken {
                    self.inner.poll_health.ok();
                }
                Polled::Taken
            }
            Err(RequestError::Api(teloxide::ApiError::TerminatedByOtherGetUpdates)) => {
                Polled::Conflict
            }
            Err(RequestError::RetryAfter(secs)) => {
                tokio::time::sleep(secs.duration()).await;
                Polled::Taken
            }
            Err(e) => {
                self.inner.poll_health.failed(&e.to_string());
                tracing::warn!(error = %e, "polling Telegram failed");
                Polled::Failed
            }
        }
    }

    /// Claims chats as work arrives and answers them, until `shutdown`.
    async fn work(self, cluster: ClusterSetup, shutdown: CancellationToken) {
        let mut wakes = cluster.queue.wakes().await;
        let mut next_claim = cluster.tick;
        loop {
            let woken = async {
                match wakes.as_mut() {
                    Some(wakes) => wakes.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                wake = woken => match wake {
                    Some(QueueWake::Stop(chat_id)) => {
                        self.interrupt(chat_id);
                        continue;
                    }
                    Some(QueueWake::Work(chat_id)) => {
                        if self.nudge(chat_id) {
                            continue;
                        }
                    }
                    None => {
                        tracing::warn!("the queue's notifications stopped; polling until they are back");
                        wakes = None;
                    }
                },
                () = tokio::time::sleep(next_claim) => {
                    if wakes.is_none() {
                        wakes = cluster.queue.wakes().await;
                    }
                }
            }
            self.claim_more(&cluster, &shutdown).await;
            // A chat held elsewhere with work waiting is claimed the moment its lease runs
            // out (its worker may have died), not up to a tick later.
            next_claim = match cluster.queue.next_free().await {
                Some(free_in) => (free_in + CLAIM_MARGIN).min(cluster.tick),
                None => cluster.tick,
            };
        }
    }

    /// With more than `max_idle` idle chats held, tells the one idle longest to let go.
    fn evict_longest_idle(&self, max_idle: usize) {
        let running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let idle: Vec<(std::time::Instant, &Arc<HeldChat>)> = (running.values())
            .filter_map(|held| Some((held.idle_since()?, held)))
            .collect();
        if idle.len() > max_idle
            && let Some((_, longest)) = idle.iter().min_by_key(|(since, _)| *since)
        {
            longest.evict.notify_one();
        }
    }

    /// Tells the chat's runner on this node that work arrived; false when none runs here.
    fn nudge(&self, chat_id: i64) -> bool {
        let running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match running.get(&chat_id) {
            Some(held) => {
                held.notify.notify_one();
                true
            }
            None => false,
        }
    }

    async fn claim_more(&self, cluster: &ClusterSetup, shutdown: &CancellationToken) {
        let busy = {
            let running = self
                .inner
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (running.values())
                .filter(|held| held.busy.load(std::sync::atomic::Ordering::Acquire))
                .count()
        };
        if shutdown.is_cancelled() {
            return;
        }
        let free = cluster.max_chats.saturating_sub(busy);
        let claiming = if free > 0 {
            cluster.queue.claim(free).await
        } else if busy < cluster.max_chats.saturating_mul(2) {
            // Full, but a chat whose answer a dead worker had begun goes first: its turn
            // takes the next free run here rather than waiting for a chat to finish.
            cluster.queue.claim_interrupted(1).await
        } else {
            return;
        };
        let claimed = match claiming {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim chats");
                return;
            }
        };
        for chat in claimed {
            let held = Arc::new(HeldChat::new());
            {
                let mut running = self
                    .inner
                    .running
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if running.contains_key(&chat.chat_id) {
                    continue;
                }
                running.insert(chat.chat_id, Arc::clone(&held));
            }
            tracing::debug!(chat_id = chat.chat_id, epoch = chat.epoch, "chat claimed");
            tokio::spawn(
                self.clone()
                    .run_chat(cluster.clone(), chat, held, shutdown.clone()),
            );
        }
    }

    /// Answers one claimed chat's updates in order until it is idle past `idle_keep`, lost,
    /// or this node stops.
    async fn run_chat(
        self,
        cluster: ClusterSetup,
        chat: ClaimedChat,
        held: Arc<HeldChat>,
        shutdown: CancellationToken,
    ) {
        let chat_id = chat.chat_id;
        let lost = CancellationToken::new();
        let renewer = tokio::spawn(renew(
            Arc::clone(&cluster.queue),
            chat.clone(),
            cluster.renew_every,
            lost.clone(),
        ));
        let queue = &cluster.queue;
        loop {
            if lost.is_cancelled() || shutdown.is_cancelled() {
                break;
            }
            let turn = match queue.next_turn(&chat).await {
                Ok(turn) => turn,
                Err(e) => {
                    tracing::warn!(chat_id, error = %e, "cannot take the chat's next update; letting it go");
                    break;
                }
            };
            let Some(turn) = turn else {
                held.set_idle(true);
                self.evict_longest_idle(cluster.max_idle);
                let idle = tokio::time::sleep(cluster.idle_keep);
                tokio::select! {
                    () = held.notify.notified() => {
                        held.set_idle(false);
                        continue;
                    }
                    () = held.evict.notified() => break,
                    () = lost.cancelled() => break,
                    () = shutdown.cancelled() => break,
                    () = idle => break,
                }
            };
            if turn.attempts > 1 {
                tracing::warn!(
                    chat_id,
                    update = turn.entry.update_id,
                    attempts = turn.attempts,
                    "answering an update another worker did not finish"
                );
            }
            // A reset left from a turn this worker lost the chat in is not this turn's.
            self.take_usage_limit(chat_id);
            let answering = self.answer_now(turn.entry.clone(), resume_of(queue, &chat, &turn));
            let answered = tokio::select! {
                answered = answering => answered,
                () = lost.cancelled() => {
                    // Another worker has the chat now: its turn here stops.
                    self.interrupt(chat_id);
                    false
                }
            };
            if !answered {
                // The account's usage limit: the chat is held until it resets, then the same
                // message is answered (still first in its queue).
                let Some(at_ms) = self.take_usage_limit(chat_id) else {
                    break;
                };
                tracing::info!(chat_id, "usage limit: holding the chat until it resets");
                tokio::select! {
                    () = tokio::time::sleep(super::turns::until_reset(at_ms)) => continue,
                    () = lost.cancelled() => break,
                    () = shutdown.cancelled() => break,
                }
            }
            if let Err(e) = queue.finish_turn(&chat, turn.queue_id).await {
                tracing::warn!(chat_id, error = %e, "the chat moved to another worker before its answer was marked done");
                break;
            }
        }
        renewer.abort();
        (self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
        .remove(&chat_id);
        if !lost.is_cancelled() {
            queue.release(&chat).await;
        }
        tracing::debug!(chat_id, "chat let go");
    }

    /// Stops the chat's turn wherever it runs (this node, or the one holding the chat).
    pub(super) fn stop_everywhere(&self, chat_id: i64) -> bool {
        let here = self.interrupt(chat_id);
        if let Some(cluster) = &self.inner.cluster {
            let queue = Arc::clone(&cluster.queue);
            tokio::spawn(async move {
                if let Err(e) = queue.stop(chat_id).await {
                    tracing::warn!(chat_id, error = %e, "cannot ask the other nodes to stop");
                }
            });
            // Another node may be running it: say we are stopping.
            return true;
        }
        here
    }
}

/// Where the turn's answer goes: into the message an earlier attempt left, and its first
/// message remembered in the queue as soon as it is sent.
fn resume_of(
    queue: &Arc<dyn ChatQueue>,
    chat: &ClaimedChat,
    turn: &crate::cluster::QueuedTurn,
) -> crate::stream::Resume {
    let (queue, chat, queue_id) = (Arc::clone(queue), chat.clone(), turn.queue_id);
    crate::stream::Resume {
        message: turn
            .reply_message_id
            .map(|id| teloxide::types::MessageId(id as i32)),
        on_sent: Some(Arc::new(move |id: teloxide::types::MessageId| {
            let (queue, chat) = (Arc::clone(&queue), chat.clone());
            tokio::spawn(async move {
                if let Err(e) = queue.note_reply(&chat, queue_id, i64::from(id.0)).await {
                    tracing::warn!(chat_id = chat.chat_id, error = %e, "cannot remember the answer's message");
                }
            });
        })),
    }
}

/// Renews the chat's lease until it is lost (then cancels `lost`) or the task is aborted.
async fn renew(
    queue: Arc<dyn ChatQueue>,
    chat: ClaimedChat,
    every: Duration,
    lost: CancellationToken,
) {
    loop {
        tokio::time::sleep(every).await;
        if !queue.renew(&chat).await {
            tracing::warn!(chat_id = chat.chat_id, "lost the chat's lease");
            lost.cancel();
            return;
        }
    }
}
