//! What runs cost, as the real CLI reports it on the fake API: each model message's tokens as
//! it streams (priced as the CLI prices them), a stopped run's cost, and the account's usage
//! limit with its reset.

use std::collections::BTreeMap;

use crate::support::{Harness, Sandboxing, failed, finished, real_claude};
use serde_json::json;
use valor_core::Backend;
use valor_fakes::anthropic::{FakeAnthropic, Reply, Turn};
use valor_protocol::pricing::Prices;
use valor_protocol::{Event, TurnErrorKind, Usage};

fn prices() -> Prices {
    Prices::published()
}

/// A tool call and then the answer, each costing tokens of every kind.
fn costly(turn: &Turn) -> Reply {
    if turn.last_tool_result.is_some() {
        return Reply::costing(Reply::text("It echoed."), 120_000, 3_000, 400_000, 20_000);
    }
    Reply::costing(
        Reply::tool("mcp__fake__echo", json!({"text": "hi"})),
        90_000,
        1_500,
        0,
        60_000,
    )
}

/// The last usage each model message reported.
fn messages(events: &[Event]) -> BTreeMap<u32, (String, Usage)> {
    let mut seen = BTreeMap::new();
    for event in events {
        if let Event::Usage {
            message,
            model,
            usage,
        } = event
        {
            seen.insert(*message, (model.clone(), usage.clone()));
        }
    }
    seen
}

#[tokio::test]
async fn each_message_is_priced_as_it_streams_as_the_cli_prices_it() {
    let fake = FakeAnthropic::start(costly).await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    for model in ["sonnet", "haiku", "opus"] {
        let mut request = h.request(1, "use echo");
        request.model = Some(model.to_owned());
        request.fresh_session = true;
        let events = h.run(request).await;
        let seen = messages(&events);
        assert_eq!(seen.len(), 2, "{events:?}");
        // The first message's price was known before the second began.
        let first_usage = events
            .iter()
            .position(|e| matches!(e, Event::Usage { message: 0, .. }))
            .unwrap();
        let result = events
            .iter()
            .position(|e| matches!(e, Event::ToolResult { .. }))
            .unwrap();
        assert!(first_usage < result);
        let estimate: f64 = (seen.values()).map(|(m, u)| prices().cost(m, u)).sum();
        let summary = finished(&events);
        let off = (estimate - summary.cost_usd).abs() / summary.cost_usd;
        assert!(
            off < 1e-9,
            "{model}: estimate {estimate} against the CLI's {}",
            summary.cost_usd
        );
        assert_eq!(seen[&1].1.cache_read_input_tokens, 400_000);
        assert_eq!(seen[&1].1.output_tokens, 3_000);
    }
}

#[tokio::test]
async fn each_turn_of_a_warm_process_costs_its_own_not_the_processs_total() {
    let fake =
        FakeAnthropic::start(|_: &Turn| Reply::costing(Reply::text("Spent."), 100_000, 0, 0, 0))
            .await;
    let h = Harness::new(real_claude(), &fake.url, |c| c.keep_warm_secs = 60).await;
    let mut costs = Vec::new();
    for turn in 0..3 {
        let mut request = h.request(5, &format!("turn {turn}"));
        request.model = Some("sonnet".to_owned());
        let events = h.run(request).await;
        let summary = finished(&events);
        assert_eq!(summary.warm, turn > 0, "turn {turn}");
        costs.push(summary.cost_usd);
    }
    // $0.30 each (the CLI reports $0.30, $0.60, $0.90: the process's total so far).
    for cost in &costs {
        assert!((cost - 0.3).abs() < 1e-9, "{costs:?}");
    }
    let runs = h.store.runs_since(0).unwrap();
    let recorded: f64 = runs.iter().map(|r| r.cost_usd).sum();
    assert!((recorded - 0.9).abs() < 1e-9, "{recorded}");
}

#[tokio::test]
async fn a_run_stopped_before_its_result_is_recorded_at_what_it_spent() {
    let fake = FakeAnthropic::start(|turn: &Turn| {
        if turn.last_tool_result.is_some() {
            // The second message stalls: the run is stopped while it waits.
            return Reply::Stall(std::time::Duration::from_secs(60));
        }
        Reply::costing(
            Reply::tool("mcp__fake__echo", json!({"text": "hi"})),
            1_000_000,
            10_000,
            0,
            0,
        )
    })
    .await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    h.driver.price_unfinished_runs(prices());
    let mut request = h.request(2, "use echo");
    request.model = Some("sonnet".to_owned());
    let cancel = request.cancel.clone();
    let mut stream = h.driver.start(request);
    while let Some(event) = stream.next().await {
        if matches!(event, Event::ToolResult { .. }) {
            cancel.cancel();
        }
        if event.is_terminal() {
            break;
        }
    }
    drop(stream);
    let runs = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let runs = h.store.runs_since(0).unwrap();
            if !runs.is_empty() {
                return runs;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    // $3 input + $0.15 output on sonnet, though no result came.
    assert!((runs[0].cost_usd - 3.15).abs() < 1e-9, "{:?}", runs[0]);
    assert_eq!(runs[0].usage.input_tokens, 1_000_000);
}

#[tokio::test]
async fn a_subscriptions_usage_limit_says_until_when() {
    let resets_at_s = valor_protocol::time::now_ms() / 1000 + 2 * 3600;
    let fake = FakeAnthropic::start(move |_: &Turn| Reply::UsageLimit { resets_at_s }).await;
    let (_operator, credentials) = crate::support::operator_login();
    let h = Harness::with_sandbox(
        real_claude(),
        &fake.url,
        |_| {},
        Sandboxing::Login(credentials),
    )
    .await;
    let events = h.run(h.request(3, "hello")).await;
    let error = failed(&events);
    assert_eq!(error.kind, TurnErrorKind::UsageLimit, "{error:?}");
    assert_eq!(error.retry_at_ms, Some(resets_at_s * 1000), "{error:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::UsageWindow { status, .. } if status == "rejected"))
    );
}

#[tokio::test]
async fn an_api_keys_spend_limit_says_until_when() {
    let fake = FakeAnthropic::start(|_: &Turn| {
        Reply::error(
            400,
            "invalid_request_error",
            "You have reached your specified API usage limits. You will regain access on 2027-01-01 at 00:00 UTC.",
        )
    })
    .await;
    let h = Harness::unsandboxed(real_claude(), &fake.url, |_| {}).await;
    let events = h.run(h.request(4, "hello")).await;
    let error = failed(&events);
    assert_eq!(error.kind, TurnErrorKind::UsageLimit, "{error:?}");
    assert_eq!(
        error.retry_at_ms,
        valor_protocol::time::unix_ms(2027, 1, 1, 0, 0)
    );
}
