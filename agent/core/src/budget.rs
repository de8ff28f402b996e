//! Spend caps that hold: every run of the backend, background work included, goes through
//! [`Budget::wrap`]. Before a run the chat's, its user's and the global counters are read
//! against `[budget]`'s caps (a spent cap refuses the run); while it runs, each model message's
//! tokens are priced ([`valor_protocol::pricing`]) and a run that crosses a cap is stopped; at
//! its end the CLI's own `total_cost_usd` (or, for a run that never reached its result, the
//! estimate) is added to every counter the run counts against. Counters live in the store
//! ([`SpendLog`]), so every node adds to and reads the same ones.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use async_trait::async_trait;
use tokio::sync::mpsc;
use valor_protocol::budget::{BudgetNotice, CapKey, Period, Scope, Spent, Unit};
use valor_protocol::pricing::{Prices, tokens_of};
use valor_protocol::time::now_ms;
use valor_protocol::turn::{background_name, is_background_chat};
use valor_protocol::{Event, Events, StoreFailure, TurnError, TurnErrorKind, TurnRequest};

use crate::backend::Backend;

/// Where spend is counted (the store implements it; both stores keep it).
#[async_trait]
pub trait SpendLog: Send + Sync {
    /// Adds a run's spend to each counter.
    async fn add_spend(
        &self,
        counters: &[String],
        usd: f64,
        tokens: u64,
    ) -> Result<(), StoreFailure>;
    /// The counters, in order (a counter never written is all zero).
    async fn spent(&self, counters: &[String]) -> Result<Vec<Spent>, StoreFailure>;
    /// Raises a counter's cap for its period; the counter after.
    async fn allow_more(&self, counter: &str, usd: f64, tokens: u64)
    -> Result<Spent, StoreFailure>;
    /// Marks the warning (`reached` false) or the spent notice as sent; false when it already
    /// was (by this node or another).
    async fn mark_told(&self, counter: &str, reached: bool) -> Result<bool, StoreFailure>;
    /// Every counter whose key starts with `prefix` (a period: `day:2026-12-08:`).
    async fn spend_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Spent)>, StoreFailure>;
}

/// Whose caps: the scope kinds `[budget]` sets caps for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapOf {
    Chat,
    User,
    Global,
}

/// `[budget]`, as the service uses it.
#[derive(Debug, Clone)]
pub struct BudgetSettings {
    pub unit: Unit,
    /// The caps set (none at 0), in `unit`.
    pub caps: Vec<(CapOf, Period, f64)>,
    /// The share of a cap at which the chat and the admins are told.
    pub warn_share: f64,
    /// What one press of [Allow more] adds, in `unit`.
    pub step: f64,
    pub window_ms: u64,
    pub prices: Prices,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            unit: Unit::Usd,
            caps: Vec::new(),
            warn_share: 0.8,
            step: 1.0,
            window_ms: 5 * 3_600_000,
            prices: Prices::new(BTreeMap::new(), ""),
        }
    }
}

/// Told to the admins: a notice about a chat or about background work.
pub type NotifyAdmins = Arc<dyn Fn(BudgetNotice) + Send + Sync>;

/// The account's usage window as the API last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageWindow {
    pub status: String,
    pub resets_at_ms: Option<u64>,
    pub window: String,
    pub seen_ms: u64,
}

/// One cap as it stands: for `/cost` and the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct CapStanding {
    pub key: CapKey,
    /// The cap with what was allowed on top (0: no cap, only counted).
    pub cap: f64,
    pub spent: f64,
    /// Told at the warning share / stopped, this period.
    pub warned: bool,
    pub resets_at_ms: u64,
}

impl CapStanding {
    fn notice(&self, unit: Unit, step: f64, chat_id: i64, reached: bool) -> BudgetNotice {
        BudgetNotice {
            key: self.key,
            unit,
            spent: self.spent,
            cap: self.cap,
            reached,
            step,
            resets_at_ms: self.resets_at_ms,
            chat_id,
        }
    }
}

/// The budget; clones share it.
#[derive(Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

struct Inner {
    settings: BudgetSettings,
    log: Arc<dyn SpendLog>,
    notify: OnceLock<NotifyAdmins>,
    window: Mutex<Option<UsageWindow>>,
}

impl Budget {
    pub fn new(settings: BudgetSettings, log: Arc<dyn SpendLog>) -> Budget {
        Budget {
            inner: Arc::new(Inner {
                settings,
                log,
                notify: OnceLock::new(),
                window: Mutex::new(None),
            }),
        }
    }

    /// Where notices for the admins go (once per cap and period, across nodes).
    pub fn notify_admins(&self, notify: NotifyAdmins) {
        let _ = self.inner.notify.set(notify);
    }

    pub fn settings(&self) -> &BudgetSettings {
        &self.inner.settings
    }

    /// `backend` with every run counted and capped.
    pub fn wrap(&self, backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(Budgeted {
            budget: self.clone(),
            backend,
        })
    }

    /// The counters a run of `chat_id` by `user_id` counts against, each period.
    fn counted(chat_id: i64, user_id: Option<i64>) -> Vec<Scope> {
        let mut scopes = vec![Scope::Global];
        if is_background_chat(chat_id) {
            scopes.push(Scope::Job(chat_id));
        } else {
            scopes.push(Scope::Chat(chat_id));
            scopes.extend(user_id.map(Scope::User));
        }
        scopes
    }

    fn counters(&self, chat_id: i64, user_id: Option<i64>, now: u64) -> Vec<String> {
        let window = self.inner.settings.window_ms;
        Self::counted(chat_id, user_id)
            .into_iter()
            .flat_map(|scope| {
                [Period::Day, Period::Month, Period::Window]
                    .map(|period| CapKey::new(scope, period).counter(now, window))
            })
            .collect()
    }

    /// The caps that apply to a run of `chat_id` by `user_id`, as they stand.
    pub async fn standing(
        &self,
        chat_id: i64,
        user_id: Option<i64>,
    ) -> Result<Vec<CapStanding>, StoreFailure> {
        let settings = &self.inner.settings;
        let now = now_ms();
        let keys: Vec<CapKey> = (settings.caps.iter())
            .filter_map(|(of, period, _)| {
                let scope = match of {
                    CapOf::Global => Scope::Global,
                    CapOf::Chat if !is_background_chat(chat_id) => Scope::Chat(chat_id),
                    CapOf::User => Scope::User(user_id?),
                    CapOf::Chat => return None,
                };
                Some(CapKey::new(scope, *period))
            })
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let counters: Vec<String> = (keys.iter())
            .map(|k| k.counter(now, settings.window_ms))
            .collect();
        let spent = self.inner.log.spent(&counters).await?;
        Ok(keys
            .into_iter()
            .zip(spent)
            .map(|(key, spent)| {
                let cap = self.cap_of(key) + spent.allowed(settings.unit);
                CapStanding {
                    key,
                    cap,
                    spent: spent.amount(settings.unit),
                    warned: spent.warned,
                    resets_at_ms: key.period.ends_at(now, settings.window_ms),
                }
            })
            .collect())
    }

    fn cap_of(&self, key: CapKey) -> f64 {
        let of = match key.scope {
            Scope::Chat(_) => CapOf::Chat,
            Scope::User(_) => CapOf::User,
            Scope::Global => CapOf::Global,
            Scope::Job(_) => return 0.0,
        };
        (self.inner.settings.caps.iter())
            .find(|(o, p, _)| *o == of && *p == key.period)
            .map_or(0.0, |(_, _, cap)| *cap)
    }

    /// Adds a finished run's spend to its counters.
    async fn record(&self, chat_id: i64, user_id: Option<i64>, usd: f64, tokens: u64) {
        if usd <= 0.0 && tokens == 0 {
            return;
        }
        let counters = self.counters(chat_id, user_id, now_ms());
        if let Err(e) = self.inner.log.add_spend(&counters, usd, tokens).await {
            tracing::error!(chat_id, error = %e, usd, tokens, "cannot count the run's spend");
        }
    }

    /// Tells the admins, once per cap and period across nodes.
    async fn tell_admins(&self, notice: &BudgetNotice) {
        let Some(notify) = self.inner.notify.get() else {
            return;
        };
        let counter = notice.key.counter(now_ms(), self.inner.settings.window_ms);
        match self.inner.log.mark_told(&counter, notice.reached).await {
            Ok(true) => notify(notice.clone()),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(chat_id = notice.chat_id, error = %e, "cannot mark a budget notice as sent")
            }
        }
    }

    /// [Allow more]: raises `key`'s cap by one step for the rest of its period; what to say.
    pub async fn allow_more(&self, key: CapKey, by: Option<i64>) -> Result<String, StoreFailure> {
        let settings = &self.inner.settings;
        let counter = key.counter(now_ms(), settings.window_ms);
        let (usd, tokens) = match settings.unit {
            Unit::Usd => (settings.step, 0),
            Unit::Tokens => (0.0, settings.step.max(0.0) as u64),
        };
        let spent = self.inner.log.allow_more(&counter, usd, tokens).await?;
        let cap = self.cap_of(key) + spent.allowed(settings.unit);
        tracing::info!(counter, by, cap, "budget raised for the period");
        Ok(format!(
            "Allowed {} more: {} {} cap is {} until it resets.",
            settings.unit.show(settings.step),
            key.scope.describe(),
            key.period.describe(),
            settings.unit.show(cap)
        ))
    }

    /// The account's usage window, as the API last reported it (subscription logins).
    pub fn usage_window(&self) -> Option<UsageWindow> {
        self.inner
            .window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn note_window(&self, status: String, resets_at_ms: Option<u64>, window: String) {
        *self
            .inner
            .window
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(UsageWindow {
            status,
            resets_at_ms,
            window,
            seen_ms: now_ms(),
        });
    }

    /// `/cost`: what the chat and its user spent today and this month, against the caps.
    pub async fn report(&self, chat_id: i64, user_id: Option<i64>) -> Result<String, StoreFailure> {
        let settings = &self.inner.settings;
        let now = now_ms();
        let mut scopes = vec![Scope::Chat(chat_id)];
        scopes.extend(user_id.map(Scope::User));
        let keys: Vec<CapKey> = (scopes.iter())
            .flat_map(|s| [Period::Day, Period::Month].map(|p| CapKey::new(*s, p)))
            .collect();
        let counters: Vec<String> = (keys.iter())
            .map(|k| k.counter(now, settings.window_ms))
            .collect();
        let spent = self.inner.log.spent(&counters).await?;
        let mut lines = vec!["💸 Spend (UTC days and months)".to_owned()];
        for (key, spent) in keys.iter().zip(&spent) {
            let cap = self.cap_of(*key) + spent.allowed(settings.unit);
            let amount = match settings.unit {
                Unit::Usd => format!(
                    "{} ({})",
                    Unit::Usd.show(spent.usd),
                    Unit::Tokens.show(spent.tokens as f64)
                ),
                Unit::Tokens => Unit::Tokens.show(spent.tokens as f64),
            };
            let who = match key.scope {
                Scope::Chat(_) => "This chat",
                _ => "You, in every chat",
            };
            let when = key.period.current();
            let of = if cap > 0.0 {
                format!(
                    " of {} ({:.0}%)",
                    settings.unit.show(cap),
                    spent.amount(settings.unit) / cap * 100.0
                )
            } else {
                " (no cap)".to_owned()
            };
            lines.push(format!("{who}, {when}: {amount}{of}"));
        }
        Ok(lines.join("\n"))
    }

    /// Every counter of the current day, month and window with its cap (the dashboard).
    pub async fn overview(&self) -> Result<Vec<CapStanding>, StoreFailure> {
        let settings = &self.inner.settings;
        let now = now_ms();
        let mut rows = Vec::new();
        for period in [Period::Day, Period::Month, Period::Window] {
            let prefix = format!(
                "{}:{}:",
                period.as_str(),
                period.label(now, settings.window_ms)
            );
            for (counter, spent) in self.inner.log.spend_with_prefix(&prefix).await? {
                let Some(scope) = Scope::from_key(&counter[prefix.len()..]) else {
                    continue;
                };
                let key = CapKey::new(scope, period);
                rows.push(CapStanding {
                    key,
                    cap: self.cap_of(key) + spent.allowed(settings.unit),
                    spent: spent.amount(settings.unit),
                    warned: spent.warned,
                    resets_at_ms: period.ends_at(now, settings.window_ms),
                });
            }
        }
        Ok(rows)
    }
}

/// How a job or chat is named in logs and on the dashboard.
pub fn scope_name(scope: Scope) -> String {
    match scope {
        Scope::Chat(id) => format!("chat {id}"),
        Scope::User(id) => format!("user {id}"),
        Scope::Global => "everything".to_owned(),
        Scope::Job(chat) => background_name(chat).unwrap_or("background").to_owned(),
    }
}

/// The backend, every run counted and capped.
struct Budgeted {
    budget: Budget,
    backend: Arc<dyn Backend>,
}

impl Backend for Budgeted {
    fn start(&self, request: TurnRequest) -> Events {
        let (tx, events) = Events::channel(64);
        let (budget, backend) = (self.budget.clone(), Arc::clone(&self.backend));
        tokio::spawn(async move { budget.run(backend, request, tx).await });
        events
    }
}

/// What a running turn has cost so far, by model message.
#[derive(Default)]
struct RunSpend {
    messages: HashMap<u32, (f64, u64)>,
}

impl RunSpend {
    fn total(&self) -> (f64, u64) {
        (self.messages.values()).fold((0.0, 0), |(u, t), (mu, mt)| (u + mu, t + mt))
    }
}

impl Budget {
    async fn run(
        self,
        backend: Arc<dyn Backend>,
        mut request: TurnRequest,
        tx: mpsc::Sender<Event>,
    ) {
        let (chat_id, user_id) = (request.chat_id, request.user_id);
        let settings = &self.inner.settings;
        let standing = match self.standing(chat_id, user_id).await {
            Ok(standing) => standing,
            Err(e) => {
                // Caps that cannot be read do not hold: no run starts until they can be.
                tracing::error!(chat_id, error = %e, "cannot read the spend counters; the run is not started");
                let error = TurnError::new(
                    TurnErrorKind::BudgetSpent,
                    format!("the spend counters cannot be read: {e}"),
                );
                let _ = tx.send(Event::failed(error)).await;
                return;
            }
        };
        if let Some(spent) = standing.iter().find(|s| s.cap > 0.0 && s.spent >= s.cap) {
            let notice = spent.notice(settings.unit, settings.step, chat_id, true);
            tracing::info!(chat_id, cap = %notice.key.code(), spent = notice.spent, limit = notice.cap, "cap spent; the run is not started");
            let error = TurnError::new(
                TurnErrorKind::BudgetSpent,
                format!("{} cap spent before the run", notice.key.code()),
            );
            self.tell_admins(&notice).await;
            let _ = tx.send(Event::Budget(notice)).await;
            let _ = tx.send(Event::failed(error)).await;
            return;
        }
        let mut warned: HashSet<CapKey> = (standing.iter())
            .filter(|s| s.warned)
            .map(|s| s.key)
            .collect();
        self.warn(&standing, 0.0, chat_id, &mut warned, &tx).await;
        let stop = request.cancel.child_token();
        request.cancel = stop.clone();
        let mut inner = backend.start(request);
        let mut spend = RunSpend::default();
        let mut stopped: Option<BudgetNotice> = None;
        // Read to the end even when nobody listens: the run's spend is counted all the same.
        while let Some(event) = inner.next().await {
            let (event, spent) = match event {
                Event::Usage {
                    message,
                    model,
                    usage,
                } => {
                    let usd = settings.prices.cost(&model, &usage);
                    spend.messages.insert(message, (usd, tokens_of(&usage)));
                    let (usd, tokens) = spend.total();
                    let so_far = match settings.unit {
                        Unit::Usd => usd,
                        Unit::Tokens => tokens as f64,
                    };
                    if stopped.is_none()
                        && let Some(over) =
                            (standing.iter()).find(|s| s.cap > 0.0 && s.spent + so_far >= s.cap)
                    {
                        let mut notice = over.notice(settings.unit, settings.step, chat_id, true);
                        notice.spent += so_far;
                        tracing::info!(chat_id, cap = %notice.key.code(), spent = notice.spent, limit = notice.cap, "cap crossed; the run is stopped");
                        stop.cancel();
                        self.tell_admins(&notice).await;
                        let _ = tx.send(Event::Budget(notice.clone())).await;
                        stopped = Some(notice);
                    } else if stopped.is_none() {
                        self.warn(&standing, so_far, chat_id, &mut warned, &tx)
                            .await;
                    }
                    continue;
                }
                Event::UsageWindow {
                    status,
                    resets_at_ms,
                    window,
                } => {
                    self.note_window(status, resets_at_ms, window);
                    continue;
                }
                Event::Final(summary) => {
                    // The CLI's own price of the run; its tokens, or the messages' when more.
                    let tokens = tokens_of(&summary.usage).max(spend.total().1);
                    let counted = (summary.cost_usd, tokens);
                    (Event::Final(summary), Some(counted))
                }
                Event::Failed { error, partial } => {
                    let failed = match &stopped {
                        Some(notice) if error.kind == TurnErrorKind::Cancelled => Event::Failed {
                            error: TurnError::new(
                                TurnErrorKind::BudgetSpent,
                                format!("stopped: {} cap crossed", notice.key.code()),
                            ),
                            partial,
                        },
                        _ => Event::Failed { error, partial },
                    };
                    (failed, Some(spend.total()))
                }
                event => (event, None),
            };
            let _ = tx.send(event).await;
            // Counted once the answer is on its way (the write waits for the disk).
            if let Some((usd, tokens)) = spent {
                self.record(chat_id, user_id, usd, tokens).await;
            }
        }
    }

    /// Past the warning share of a cap not warned of this period: the chat and the admins
    /// are told.
    async fn warn(
        &self,
        standing: &[CapStanding],
        so_far: f64,
        chat_id: i64,
        warned: &mut HashSet<CapKey>,
        tx: &mpsc::Sender<Event>,
    ) {
        let settings = &self.inner.settings;
        for s in standing {
            let now_spent = s.spent + so_far;
            if s.cap <= 0.0 || now_spent < s.cap * settings.warn_share || !warned.insert(s.key) {
                continue;
            }
            let mut notice = s.notice(settings.unit, settings.step, chat_id, false);
            notice.spent = now_spent;
            let counter = s.key.counter(now_ms(), settings.window_ms);
            // Once per period for the chat too, across nodes.
            match self.inner.log.mark_told(&counter, false).await {
                Ok(true) => {
                    if let Some(notify) = self.inner.notify.get() {
                        notify(notice.clone());
                    }
                    let _ = tx.send(Event::Budget(notice)).await;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(chat_id, error = %e, "cannot mark a budget warning as sent")
                }
            }
        }
    }
}

/// Counters in memory (tests, and a `valor chat` with no store).
#[derive(Default)]
pub struct InMemorySpendLog {
    counters: Mutex<BTreeMap<String, Spent>>,
}

impl InMemorySpendLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Spent>> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl SpendLog for InMemorySpendLog {
    async fn add_spend(
        &self,
        counters: &[String],
        usd: f64,
        tokens: u64,
    ) -> Result<(), StoreFailure> {
        let mut all = self.lock();
        for counter in counters {
            let spent = all.entry(counter.clone()).or_default();
            spent.usd += usd;
            spent.tokens += tokens;
        }
        Ok(())
    }

    async fn spent(&self, counters: &[String]) -> Result<Vec<Spent>, StoreFailure> {
        let all = self.lock();
        Ok(counters
            .iter()
            .map(|c| all.get(c).copied().unwrap_or_default())
            .collect())
    }

    async fn allow_more(
        &self,
        counter: &str,
        usd: f64,
        tokens: u64,
    ) -> Result<Spent, StoreFailure> {
        let mut all = self.lock();
        let spent = all.entry(counter.to_owned()).or_default();
        spent.allowed_usd += usd;
        spent.allowed_tokens += tokens;
        Ok(*spent)
    }

    async fn mark_told(&self, counter: &str, reached: bool) -> Result<bool, StoreFailure> {
        let mut all = self.lock();
        let spent = all.entry(counter.to_owned()).or_default();
        let flag = if reached {
            &mut spent.stopped
        } else {
            &mut spent.warned
        };
        Ok(!std::mem::replace(flag, true))
    }

    async fn spend_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Spent)>, StoreFailure> {
        Ok(self
            .lock()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), *v))
            .collect())
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
