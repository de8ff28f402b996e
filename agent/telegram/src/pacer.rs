//! Pacing (seed 002's StreamingOptimizer, made stricter). Telegram allows about one message a
//! second per chat, twenty a minute per group and thirty a second for the whole bot, and counts
//! edits like sends; teloxide's `Throttle` paces only sends. So every send, edit and delete of a
//! chat goes through that chat's [`ChatPacer`], with a 5% margin, and every chat's pacer draws
//! on the one [`BotBudget`] beneath them. Essential messages (answers, replies, the final text)
//! queue for the bot's next free slot; progress (status lines, streamed edits) goes only when a
//! slot is free now and is dropped otherwise (the next one shows the newer state), so it never
//! delays an answer and is never sent late. A 429's `retry_after` is obeyed: progress is skipped
//! while it lasts, essential messages wait for it. Flood waits are per chat, so one chat's never
//! holds another.
//!
//! [`Cadence`] picks how often a streamed answer is updated: 2-3 s by content, slower as edits
//! get slow or 429s appear.

use std::time::Duration;

use teloxide::RequestError;
use tokio::time::Instant;

/// Tries of [`ChatPacer::send_essential`] through flood waits.
pub const ESSENTIAL_ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    Private,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacerConfig {
    /// Between two messages (sends or edits) of a private chat: 1 s plus 5%.
    pub private_interval: Duration,
    /// Between two messages of a group: 3 s (20 a minute) plus 5%.
    pub group_interval: Duration,
    /// The longest a flood wait may hold a chat's queue; a longer one hands the final text to
    /// a background delivery (never dropped) and lets the chat go on.
    pub max_hold: Duration,
    /// Between two messages of the whole bot: 30 a second plus 5%.
    pub bot_interval: Duration,
}

impl Default for PacerConfig {
    fn default() -> Self {
        PacerConfig {
            private_interval: Duration::from_millis(1050),
            group_interval: Duration::from_millis(3150),
            max_hold: Duration::from_secs(60),
            bot_interval: Duration::from_micros(35_000),
        }
    }
}

/// The bot's own budget across every chat: one message per `interval` at most. Essential
/// messages reserve the next free slot in the order they ask; progress takes a slot only when
/// one is free now.
#[derive(Debug)]
pub struct BotBudget {
    interval: Duration,
    /// The next free slot.
    next: std::sync::Mutex<Instant>,
    /// Progress updates dropped because every slot was taken.
    dropped: std::sync::atomic::AtomicU64,
}

/// How late "now" may be for progress: a slot this close counts as free.
const PROGRESS_SLACK: Duration = Duration::from_millis(2);

impl BotBudget {
    pub fn new(interval: Duration) -> std::sync::Arc<BotBudget> {
        std::sync::Arc::new(BotBudget {
            interval,
            next: std::sync::Mutex::new(Instant::now()),
            dropped: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn next(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The slot an essential message goes in (now or later), taken.
    pub fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next();
        let at = (*next).max(now);
        *next = at + self.interval;
        at
    }

    /// A slot now for progress, taken; `None` (and counted) when every slot is spoken for.
    pub fn try_now(&self, now: Instant) -> Option<Instant> {
        let mut next = self.next();
        if *next > now + PROGRESS_SLACK {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        let at = (*next).max(now);
        *next = at + self.interval;
        Some(at)
    }

    /// Waits for an essential slot (a message that belongs to no chat's pacer: an answer to a
    /// stranger).
    pub async fn take(&self) {
        let at = self.reserve(Instant::now());
        tokio::time::sleep_until(at).await;
    }

    /// Progress updates dropped so far for want of a slot.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What the caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Send now.
    Go,
    /// Skip this progress update: the chat is in a flood wait.
    Skip,
}

/// What [`ChatPacer::take`] found.
enum Take {
    /// Send at this instant (now, or when the bot's budget has a slot).
    Go(Instant),
    Skip,
    /// The chat's next turn is at this instant.
    NotYet(Instant),
}

/// One chat's pacer. Clones share it: a streamed answer and a command reply in the same chat
/// take turns without either waiting for the other to finish.
#[derive(Debug, Clone)]
pub struct ChatPacer {
    interval: Duration,
    max_hold: Duration,
    /// The chat's messages take their turns in the order they asked (tokio's mutex is fair):
    /// a photo a tool sent goes before the answer that says it was sent.
    turns: std::sync::Arc<tokio::sync::Mutex<()>>,
    slots: std::sync::Arc<std::sync::Mutex<Slots>>,
    budget: std::sync::Arc<BotBudget>,
}

#[derive(Debug)]
struct Slots {
    /// No message before this.
    next: Instant,
    /// Telegram's `retry_after`, if one is running.
    flood_until: Option<Instant>,
}

impl ChatPacer {
    /// A chat's pacer with a bot budget of its own (one chat alone, tests).
    pub fn new(kind: ChatKind, config: PacerConfig) -> ChatPacer {
        ChatPacer::sharing(kind, config, BotBudget::new(config.bot_interval))
    }

    /// A chat's pacer drawing on the bot's `budget`, shared with every other chat.
    pub fn sharing(
        kind: ChatKind,
        config: PacerConfig,
        budget: std::sync::Arc<BotBudget>,
    ) -> ChatPacer {
        ChatPacer {
            budget,
            turns: std::sync::Arc::new(tokio::sync::Mutex::new(())),
            max_hold: config.max_hold,
            interval: match kind {
                ChatKind::Private => config.private_interval,
                ChatKind::Group => config.group_interval,
            },
            slots: std::sync::Arc::new(std::sync::Mutex::new(Slots {
                next: Instant::now(),
                flood_until: None,
            })),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for this chat's turn to send (in the order the chat's messages asked), then for
    /// a slot of the bot's budget. A progress update (`essential` false) is skipped instead of
    /// waiting out a flood wait or for the bot's budget; an essential one waits for both.
    pub async fn acquire(&self, essential: bool) -> Permit {
        if !essential && self.flood_remaining().is_some() {
            return Permit::Skip;
        }
        let _turn = self.turns.lock().await;
        loop {
            match self.take(essential) {
                Take::Go(at) => {
                    tokio::time::sleep_until(at).await;
                    return Permit::Go;
                }
                Take::Skip => return Permit::Skip,
                Take::NotYet(turn) => tokio::time::sleep_until(turn).await,
            }
        }
    }

    fn take(&self, essential: bool) -> Take {
        let mut slots = self.slots();
        let now = Instant::now();
        let flood = slots.flood_until.filter(|until| *until > now);
        if flood.is_some() && !essential {
            return Take::Skip;
        }
        let turn = flood.map_or(slots.next, |until| until.max(slots.next));
        if turn > now {
            return Take::NotYet(turn);
        }
        let slot = match essential {
            true => self.budget.reserve(now),
            false => match self.budget.try_now(now) {
                Some(slot) => slot,
                None => return Take::Skip,
            },
        };
        // The chat is spoken for until a whole interval after its message goes.
        slots.next = slot + self.interval;
        Take::Go(slot)
    }

    /// A draft preview (`sendMessageDraft`) may go now unless the chat is in a flood wait.
    /// Drafts are ephemeral and Telegram publishes no limit for them: they take no message
    /// slot, their own cadence spaces them ([`Cadence::draft_interval`]), and a 429 on one
    /// holds the chat like any other.
    pub fn draft_permit(&self) -> Permit {
        if self.flood_remaining().is_some() {
            Permit::Skip
        } else {
            Permit::Go
        }
    }

    /// Sends one message that must land (a reply, a delete, an edit that replaces a
    /// question): waits for the chat's turn and the bot's slot, waits out a flood wait and
    /// tries again, at most [`ESSENTIAL_ATTEMPTS`] times; any other error is returned at once.
    pub async fn send_essential<T, F, Fut>(&self, mut send: F) -> Result<T, RequestError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RequestError>>,
    {
        let mut attempt = 1;
        loop {
            self.acquire(true).await;
            match send().await {
                Err(RequestError::RetryAfter(wait)) => {
                    self.flood_wait(wait.duration());
                    if attempt == ESSENTIAL_ATTEMPTS {
                        return Err(RequestError::RetryAfter(wait));
                    }
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    /// Records a 429: nothing is sent to this chat for `retry_after`.
    pub fn flood_wait(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut slots = self.slots();
        slots.flood_until = Some(slots.flood_until.map_or(until, |u| u.max(until)));
    }

    /// The longest a flood wait may hold the chat (see [`PacerConfig::max_hold`]).
    pub fn max_hold(&self) -> Duration {
        self.max_hold
    }

    /// The running flood wait, if any.
    pub fn flood_remaining(&self) -> Option<Duration> {
        let now = Instant::now();
        self.slots()
            .flood_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

/// What a streamed answer is, for its update interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    ShortText,
    Development,
    Code,
    Error,
}

/// Classifies text written so far.
pub fn classify_content(text: &str) -> ContentKind {
    let lower = text.to_ascii_lowercase();
    if text.contains("```") {
        ContentKind::Code
    } else if ["error", "failed", "exception", "traceback", "panicked"]
        .iter()
        .any(|w| lower.contains(w))
    {
        ContentKind::Error
    } else if text.len() > 400
        || ["implement", "function", "test", "commit", "build", "file"]
            .iter()
            .any(|w| lower.contains(w))
    {
        ContentKind::Development
    } else {
        ContentKind::ShortText
    }
}

/// The update interval of a streamed answer, kept within 2-3 s.
#[derive(Debug, Clone, Default)]
pub struct Cadence {
    /// Smoothed edit latency, seconds.
    latency: f64,
    /// 429s seen recently (decays with each good edit).
    floods: f64,
}

impl Cadence {
    pub const MIN: Duration = Duration::from_millis(2000);
    pub const MAX: Duration = Duration::from_millis(3000);

    /// The interval to wait before the next update of content of `kind`.
    pub fn interval(&self, kind: ContentKind) -> Duration {
        let base = match kind {
            // Short answers and errors: show them soon.
            ContentKind::ShortText | ContentKind::Error => 2.1,
            ContentKind::Development => 2.4,
            // Code blocks re-render whole on every edit: fewer, larger updates.
            ContentKind::Code => 2.6,
        };
        let seconds = base + 2.0 * self.latency + 0.3 * self.floods;
        Duration::from_secs_f64(seconds.clamp(Self::MIN.as_secs_f64(), Self::MAX.as_secs_f64()))
    }

    /// The interval between draft previews: the text followed at least every 0.5 s (the peer
    /// claude-code-telegram drafts every 0.3 s), slower after 429s.
    pub fn draft_interval(&self) -> Duration {
        let seconds = 0.4 + 0.5 * self.floods;
        Duration::from_secs_f64(seconds.clamp(0.3, Self::MAX.as_secs_f64()))
    }

    /// An edit went through in `latency`.
    pub fn edit_ok(&mut self, latency: Duration) {
        self.latency = 0.8 * self.latency + 0.2 * latency.as_secs_f64().min(2.0);
        self.floods *= 0.8;
    }

    /// An edit got a 429.
    pub fn flooded(&mut self) {
        self.floods += 1.0;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sends_and_edits_share_one_spacing_with_a_margin() {
        let pacer = ChatPacer::new(ChatKind::Private, PacerConfig::default());
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..4 {
            assert_eq!(pacer.acquire(false).await, Permit::Go);
            at.push((Instant::now() - start).as_millis());
        }
        assert_eq!(at, [0, 1050, 2100, 3150]);
        let group = ChatPacer::new(ChatKind::Group, PacerConfig::default());
        group.acquire(true).await;
        let t = Instant::now();
        group.acquire(true).await;
        assert_eq!((Instant::now() - t).as_millis(), 3150);
    }

    #[tokio::test(start_paused = true)]
    async fn an_essential_send_waits_out_flood_waits_then_gives_up() {
        use teloxide::types::Seconds;
        let pacer = ChatPacer::new(ChatKind::Private, PacerConfig::default());
        let tries = std::sync::atomic::AtomicU32::new(0);
        let start = Instant::now();
        let sent = pacer
            .send_essential(|| async {
                match tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                    0 | 1 => Err(RequestError::RetryAfter(Seconds::from_seconds(5))),
                    _ => Ok("sent"),
                }
            })
            .await;
        assert_eq!(sent.unwrap(), "sent");
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert!(
            (Instant::now() - start).as_secs() >= 10,
            "both waits waited out"
        );

        let tries = std::sync::atomic::AtomicU32::new(0);
        let flooded: Result<(), _> = pacer
            .send_essential(|| async {
                tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(RequestError::RetryAfter(Seconds::from_seconds(1)))
            })
            .await;
        assert!(matches!(flooded, Err(RequestError::RetryAfter(_))));
        assert_eq!(
            tries.load(std::sync::atomic::Ordering::SeqCst),
            ESSENTIAL_ATTEMPTS as u32
        );
        // Any other error is not tried again.
        let tries = std::sync::atomic::AtomicU32::new(0);
        let refused: Result<(), _> = pacer
            .send_essential(|| async {
                tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(RequestError::Api(teloxide::ApiError::BotBlocked))
            })
            .await;
        assert!(matches!(refused, Err(RequestError::Api(_))));
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_wait_skips_progress_and_holds_the_final_text() {
        let pacer = ChatPacer::new(ChatKind::Private, PacerConfig::default());
        pacer.acquire(false).await;
        pacer.flood_wait(Duration::from_secs(30));
        assert_eq!(pacer.acquire(false).await, Permit::Skip);
        assert_eq!(pacer.flood_remaining(), Some(Duration::from_secs(30)));
        let t = Instant::now();
        assert_eq!(pacer.acquire(true).await, Permit::Go);
        assert_eq!((Instant::now() - t).as_secs(), 30);
        assert_eq!(pacer.flood_remaining(), None);
        assert_eq!(pacer.acquire(false).await, Permit::Go);
    }

    #[tokio::test(start_paused = true)]
    async fn one_chats_flood_wait_never_delays_another() {
        let flooded = ChatPacer::new(ChatKind::Private, PacerConfig::default());
        let other = ChatPacer::new(ChatKind::Private, PacerConfig::default());
        flooded.flood_wait(Duration::from_secs(60));
        let t = Instant::now();
        let (a, b) = tokio::join!(flooded.acquire(true), async {
            let permit = other.acquire(true).await;
            (permit, Instant::now() - t)
        });
        assert_eq!(a, Permit::Go);
        assert_eq!(b, (Permit::Go, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn every_chat_draws_on_one_bot_budget_and_progress_gives_way() {
        let config = PacerConfig::default();
        let budget = BotBudget::new(config.bot_interval);
        let start = Instant::now();
        let mut answers = tokio::task::JoinSet::new();
        for _ in 0..90 {
            let pacer = ChatPacer::sharing(ChatKind::Private, config, Arc::clone(&budget));
            answers.spawn(async move {
                pacer.acquire(true).await;
                Instant::now() - start
            });
        }
        // While answers wait for the budget, a status line of another chat is dropped, not
        // queued.
        tokio::task::yield_now().await;
        let status = ChatPacer::sharing(ChatKind::Private, config, Arc::clone(&budget));
        assert_eq!(status.acquire(false).await, Permit::Skip);
        assert_eq!(budget.dropped(), 1);
        let mut at: Vec<Duration> = answers.join_all().await;
        at.sort();
        // 90 answers of 90 chats: one every 35 ms, never 30 within a second.
        assert_eq!(at.last().copied(), Some(config.bot_interval * 89));
        for (i, first) in at.iter().enumerate() {
            let within = at[i..]
                .iter()
                .take_while(|t| **t - *first < Duration::from_secs(1))
                .count();
            assert!(within < 30, "{within} messages within a second");
        }
        // Once the budget is free again, progress goes at once.
        tokio::time::sleep(config.bot_interval).await;
        let now = Instant::now();
        assert_eq!(status.acquire(false).await, Permit::Go);
        assert_eq!(Instant::now(), now);
    }

    #[tokio::test(start_paused = true)]
    async fn a_chats_messages_go_in_the_order_they_asked() {
        let pacer = ChatPacer::new(ChatKind::Private, PacerConfig::default());
        pacer.acquire(true).await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiting = tokio::task::JoinSet::new();
        for label in ["photo", "answer", "reply"] {
            let (pacer, order) = (pacer.clone(), Arc::clone(&order));
            waiting.spawn(async move {
                pacer.acquire(true).await;
                order.lock().unwrap().push(label);
            });
            // Each asks a moment after the one before.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        waiting.join_all().await;
        assert_eq!(*order.lock().unwrap(), ["photo", "answer", "reply"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_waiting_for_the_bot_keeps_its_chat_spaced_from_when_it_went() {
        let config = PacerConfig::default();
        let budget = BotBudget::new(config.bot_interval);
        // The bot is busy for 2 s with other chats' answers.
        for _ in 0..57 {
            budget.reserve(Instant::now());
        }
        let chat = ChatPacer::sharing(ChatKind::Private, config, budget);
        let start = Instant::now();
        chat.acquire(true).await;
        let first = Instant::now() - start;
        assert_eq!(first, config.bot_interval * 57);
        chat.acquire(true).await;
        assert_eq!(Instant::now() - start - first, config.private_interval);
    }

    #[test]
    fn cadence_stays_within_two_to_three_seconds_and_adapts() {
        let mut cadence = Cadence::default();
        assert_eq!(
            cadence.interval(ContentKind::ShortText),
            Duration::from_millis(2100)
        );
        assert_eq!(
            cadence.interval(ContentKind::Code),
            Duration::from_millis(2600)
        );
        for _ in 0..20 {
            cadence.edit_ok(Duration::from_millis(300));
        }
        let slow = cadence.interval(ContentKind::ShortText);
        assert!(
            slow > Duration::from_millis(2500) && slow <= Cadence::MAX,
            "{slow:?}"
        );
        for _ in 0..10 {
            cadence.flooded();
        }
        assert_eq!(cadence.interval(ContentKind::Code), Cadence::MAX);
        for _ in 0..60 {
            cadence.edit_ok(Duration::from_millis(10));
        }
        assert!(cadence.interval(ContentKind::ShortText) < Duration::from_millis(2200));
    }

    #[test]
    fn content_classes() {
        assert_eq!(
            classify_content("Sure, here it is."),
            ContentKind::ShortText
        );
        assert_eq!(classify_content("```rust\nfn x() {}"), ContentKind::Code);
        assert_eq!(
            classify_content("The build failed with error E0308"),
            ContentKind::Error
        );
        assert_eq!(
            classify_content("I will implement the function and add a test"),
            ContentKind::Development
        );
    }
}
