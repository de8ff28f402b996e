use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use valor_protocol::budget::{BudgetNotice, CapKey, Period, Scope, Unit};
use valor_protocol::pricing::Prices;
use valor_protocol::turn::{DAYDREAM_CHAT_ID, SUMMARY_CHAT_ID};
use valor_protocol::{Event, Events, TurnError, TurnErrorKind, TurnRequest, TurnSummary, Usage};

use super::*;

/// A backend whose runs each write `messages` model messages of a million input tokens on
/// sonnet ($3 each), a second apart, then answer with the CLI's own price `cli_cost`; a
/// cancelled run fails as the driver's does.
struct Spender {
    messages: u32,
    cli_cost: f64,
    started: AtomicUsize,
}

impl Spender {
    fn new(messages: u32, cli_cost: f64) -> Arc<Spender> {
        Arc::new(Spender {
            messages,
            cli_cost,
            started: AtomicUsize::new(0),
        })
    }
}

impl Backend for Spender {
    fn start(&self, request: TurnRequest) -> Events {
        self.started.fetch_add(1, Ordering::SeqCst);
        let (tx, events) = Events::channel(16);
        let (messages, cli_cost) = (self.messages, self.cli_cost);
        tokio::spawn(async move {
            for message in 0..messages {
                let usage = Usage {
                    input_tokens: 1_000_000,
                    ..Usage::default()
                };
                let model = "claude-sonnet-4-5".to_owned();
                let _ = (tx.send(Event::Usage {
                    message,
                    model,
                    usage,
                }))
                .await;
                tokio::select! {
                    () = request.cancel.cancelled() => {
                        let error = TurnError::new(TurnErrorKind::Cancelled, "stopped on request");
                        let _ = tx.send(Event::failed(error)).await;
                        return;
                    }
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            let mut summary = TurnSummary::of_text("s", "claude-sonnet-4-5", "done");
            summary.cost_usd = cli_cost;
            summary.usage.input_tokens = u64::from(messages) * 1_000_000;
            let _ = tx.send(Event::Final(summary)).await;
        });
        events
    }
}

fn settings(caps: Vec<(CapOf, Period, f64)>) -> BudgetSettings {
    BudgetSettings {
        unit: Unit::Usd,
        caps,
        warn_share: 0.8,
        step: 5.0,
        window_ms: 5 * 3_600_000,
        prices: Prices::new(
            BTreeMap::from([("sonnet".to_owned(), [3.0, 15.0])]),
            "sonnet",
        ),
    }
}

struct Harness {
    budget: Budget,
    log: Arc<InMemorySpendLog>,
    told_admins: Arc<Mutex<Vec<BudgetNotice>>>,
}

fn harness(caps: Vec<(CapOf, Period, f64)>) -> Harness {
    let log = Arc::new(InMemorySpendLog::default());
    let budget = Budget::new(settings(caps), Arc::clone(&log) as Arc<dyn SpendLog>);
    let told_admins: Arc<Mutex<Vec<BudgetNotice>>> = Arc::default();
    let told = Arc::clone(&told_admins);
    budget.notify_admins(Arc::new(move |n| told.lock().unwrap().push(n)));
    Harness {
        budget,
        log,
        told_admins,
    }
}

async fn run(backend: Arc<dyn Backend>, chat_id: i64, user: Option<i64>) -> Vec<Event> {
    let mut request = TurnRequest::new(chat_id, "hi");
    request.user_id = user;
    let mut events = backend.start(request);
    let mut seen = Vec::new();
    while let Some(event) = events.next().await {
        seen.push(event);
    }
    seen
}

fn notices(events: &[Event]) -> Vec<&BudgetNotice> {
    (events.iter())
        .filter_map(|e| match e {
            Event::Budget(n) => Some(n),
            _ => None,
        })
        .collect()
}

fn failure(events: &[Event]) -> Option<TurnErrorKind> {
    events.iter().find_map(|e| match e {
        Event::Failed { error, .. } => Some(error.kind),
        _ => None,
    })
}

async fn spent_usd(h: &Harness, key: CapKey) -> f64 {
    let counter = key.counter(valor_protocol::time::now_ms(), 5 * 3_600_000);
    h.log.spent(&[counter]).await.unwrap()[0].usd
}

#[tokio::test(start_paused = true)]
async fn a_run_that_crosses_its_cap_is_stopped_and_what_it_spent_counts() {
    let h = harness(vec![(CapOf::Chat, Period::Day, 10.0)]);
    let spender = Spender::new(10, 30.0);
    let backend = h.budget.wrap(spender.clone());
    let events = run(Arc::clone(&backend), 7, Some(70)).await;
    // $3 a message: warned at $9 (80%), stopped at $12 (over $10).
    let said = notices(&events);
    assert_eq!(said.len(), 2, "{events:?}");
    assert!(
        !said[0].reached && (said[0].spent - 9.0).abs() < 1e-9,
        "{said:?}"
    );
    assert!(
        said[1].reached && (said[1].spent - 12.0).abs() < 1e-9,
        "{said:?}"
    );
    assert_eq!(failure(&events), Some(TurnErrorKind::BudgetSpent));
    // No Usage event reaches the channel.
    assert!(!events.iter().any(|e| matches!(e, Event::Usage { .. })));
    // The estimate of what it spent counts, for the chat, its user and everything.
    for scope in [Scope::Chat(7), Scope::User(70), Scope::Global] {
        let usd = spent_usd(&h, CapKey::new(scope, Period::Day)).await;
        assert!((usd - 12.0).abs() < 1e-9, "{scope:?}: {usd}");
    }
    // The admins heard of both, once each.
    assert_eq!(h.told_admins.lock().unwrap().len(), 2);

    // The next run does not start at all; the admins are not told again.
    let events = run(Arc::clone(&backend), 7, Some(70)).await;
    assert_eq!(spender.started.load(Ordering::SeqCst), 1);
    assert_eq!(failure(&events), Some(TurnErrorKind::BudgetSpent));
    assert!(notices(&events)[0].reached);
    assert_eq!(h.told_admins.lock().unwrap().len(), 2);
    // Another chat has its own cap.
    let other = run(Arc::clone(&backend), 8, Some(70)).await;
    assert_eq!(
        failure(&other),
        Some(TurnErrorKind::BudgetSpent),
        "stopped at $12 again"
    );
    assert_eq!(spender.started.load(Ordering::SeqCst), 2);

    // [Allow more] lifts the cap by a step ($5 → $15): chat 7 runs again.
    let said = (h.budget)
        .allow_more(CapKey::new(Scope::Chat(7), Period::Day), Some(1))
        .await
        .unwrap();
    assert!(said.contains("$15.00"), "{said}");
    let events = run(Arc::clone(&backend), 7, Some(70)).await;
    assert_eq!(spender.started.load(Ordering::SeqCst), 3);
    assert_eq!(
        failure(&events),
        Some(TurnErrorKind::BudgetSpent),
        "$12 + $3 is $15"
    );
}

#[tokio::test(start_paused = true)]
async fn a_finished_run_counts_the_clis_own_price() {
    let h = harness(vec![(CapOf::Global, Period::Month, 1_000.0)]);
    let backend = h.budget.wrap(Spender::new(2, 5.55));
    let events = run(backend, 7, None).await;
    assert!(matches!(events.last(), Some(Event::Final(_))), "{events:?}");
    let usd = spent_usd(&h, CapKey::new(Scope::Global, Period::Month)).await;
    assert!(
        (usd - 5.55).abs() < 1e-9,
        "the CLI's total_cost_usd, not the $6 estimate: {usd}"
    );
    let report = h.budget.report(7, None).await.unwrap();
    assert!(report.contains("This chat, today: $5.55"), "{report}");
}

#[tokio::test(start_paused = true)]
async fn background_work_counts_against_the_global_cap_and_its_job() {
    let h = harness(vec![
        (CapOf::Chat, Period::Day, 1.0),
        (CapOf::Global, Period::Day, 10.0),
    ]);
    let spender = Spender::new(2, 6.0);
    let backend = h.budget.wrap(spender.clone());
    // A chat's $1 cap is no summary's: it runs, and counts.
    let events = run(Arc::clone(&backend), SUMMARY_CHAT_ID, None).await;
    assert!(matches!(events.last(), Some(Event::Final(_))), "{events:?}");
    let job = spent_usd(&h, CapKey::new(Scope::Job(SUMMARY_CHAT_ID), Period::Day)).await;
    assert!((job - 6.0).abs() < 1e-9, "{job}");
    // The daydream crosses the global cap: stopped, and the admins hear whose run it was.
    let events = run(Arc::clone(&backend), DAYDREAM_CHAT_ID, None).await;
    assert_eq!(
        failure(&events),
        Some(TurnErrorKind::BudgetSpent),
        "{events:?}"
    );
    let told = h.told_admins.lock().unwrap().clone();
    assert!(
        told.iter()
            .any(|n| n.reached && n.chat_id == DAYDREAM_CHAT_ID),
        "{told:?}"
    );
    let global = spent_usd(&h, CapKey::new(Scope::Global, Period::Day)).await;
    assert!((global - 12.0).abs() < 1e-9, "{global}");
    // And now no chat runs either.
    let events = run(backend, 7, None).await;
    assert_eq!(failure(&events), Some(TurnErrorKind::BudgetSpent));
    assert_eq!(spender.started.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn caps_count_tokens_under_a_subscription() {
    let log = Arc::new(InMemorySpendLog::default());
    let mut s = settings(vec![(CapOf::User, Period::Window, 2_500_000.0)]);
    s.unit = Unit::Tokens;
    let budget = Budget::new(s, Arc::clone(&log) as Arc<dyn SpendLog>);
    let backend = budget.wrap(Spender::new(5, 0.0));
    let events = run(Arc::clone(&backend), 7, Some(70)).await;
    let said = notices(&events);
    assert!(
        said.iter().any(|n| n.reached && n.unit == Unit::Tokens),
        "{said:?}"
    );
    assert!(
        said[said.len() - 1].text(0).contains("3.0M tokens"),
        "{said:?}"
    );
    // Another user is not stopped by this user's cap.
    let events = run(backend, 7, Some(71)).await;
    assert_eq!(
        failure(&events),
        Some(TurnErrorKind::BudgetSpent),
        "their own 3M crosses too"
    );
    assert!(
        notices(&events)
            .iter()
            .all(|n| n.key.scope == Scope::User(71))
    );
}

/// Counters that cannot be read.
struct Broken;

#[async_trait]
impl SpendLog for Broken {
    async fn add_spend(&self, _: &[String], _: f64, _: u64) -> Result<(), StoreFailure> {
        Err(StoreFailure::failed("down"))
    }
    async fn spent(&self, _: &[String]) -> Result<Vec<Spent>, StoreFailure> {
        Err(StoreFailure::failed("down"))
    }
    async fn allow_more(&self, _: &str, _: f64, _: u64) -> Result<Spent, StoreFailure> {
        Err(StoreFailure::failed("down"))
    }
    async fn mark_told(&self, _: &str, _: bool) -> Result<bool, StoreFailure> {
        Err(StoreFailure::failed("down"))
    }
    async fn spend_with_prefix(&self, _: &str) -> Result<Vec<(String, Spent)>, StoreFailure> {
        Err(StoreFailure::failed("down"))
    }
}

#[tokio::test(start_paused = true)]
async fn caps_that_cannot_be_read_start_no_run_and_without_caps_nothing_is_read() {
    let spender = Spender::new(1, 1.0);
    let capped = Budget::new(
        settings(vec![(CapOf::Chat, Period::Day, 5.0)]),
        Arc::new(Broken),
    );
    let events = run(capped.wrap(spender.clone()), 7, None).await;
    assert_eq!(failure(&events), Some(TurnErrorKind::BudgetSpent));
    assert_eq!(spender.started.load(Ordering::SeqCst), 0);
    assert!(capped.report(7, None).await.is_err());
    // No cap set: the run goes on (its spend not counted is logged, not fatal).
    let uncapped = Budget::new(settings(Vec::new()), Arc::new(Broken));
    let events = run(uncapped.wrap(spender.clone()), 7, None).await;
    assert!(matches!(events.last(), Some(Event::Final(_))), "{events:?}");
}
