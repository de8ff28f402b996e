//! `valor stats`: runs per day, model, routing class, effort and chat (the aggregation is the
//! store's [`RunAnalytics`]). From the store when no Valor runs, else from the running agent
//! (`GET /runs`, behind the store's token), so it works while `valor run` holds the store; on
//! several machines, every node's runs from the cluster's database.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;
use valor_store::{RunAnalytics, RunRecord, RunTotals, Store, StoreError};

/// Days `valor stats` and `GET /runs` go back at most.
const MAX_DAYS: u32 = 366;

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// How many days back, today included.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// One table only: per model, routing class, effort or chat.
    #[arg(long, value_enum)]
    by: Option<By>,
    /// One JSON document (every table) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum By {
    Model,
    Class,
    Effort,
    Chat,
}

fn row(label: &str, totals: &RunTotals) -> String {
    format!(
        "{label:<24} {:>6} {:>7} {:>10.4} {:>10} {:>10} {:>7.1}",
        totals.turns,
        totals.failed,
        totals.cost_usd,
        totals.input_tokens,
        totals.output_tokens,
        totals.mean_duration_ms() / 1000.0
    )
}

const HEADER: &str = "turns  failed   cost_usd  tokens_in tokens_out   avg_s";

/// The first millisecond of the day `days - 1` days before today (UTC).
fn since_ms(days: u32) -> u64 {
    let day_ms = 86_400_000;
    let today = valor_protocol::time::now_ms() / day_ms;
    today.saturating_sub(u64::from(days.clamp(1, MAX_DAYS)) - 1) * day_ms
}

pub async fn stats(config_path: Option<PathBuf>, args: StatsArgs) -> ExitCode {
    let loaded = match crate::config_cmd::load(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let runs = match runs_since(&loaded, since_ms(args.days)).await {
        Ok(runs) => runs,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = if args.json {
        serde_json::to_string_pretty(&RunAnalytics::of(&runs)).unwrap_or_default() + "\n"
    } else {
        report(&runs, args.days, args.by)
    };
    // A closed pipe (`valor stats | head`) is not an error.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    ExitCode::SUCCESS
}

/// The runs since `since_ms`: every node's from the cluster's database (`[cluster]`), else
/// from the store, or through the agent that holds it.
async fn runs_since(
    loaded: &valor_config::Loaded,
    since_ms: u64,
) -> Result<Vec<RunRecord>, String> {
    let config = &loaded.config;
    let cluster = crate::shared::cluster_store(loaded, 2).await;
    if let Some(pg) = cluster.map_err(|e| format!("{e:#}"))? {
        return pg
            .runs_between(since_ms, u64::MAX)
            .await
            .map_err(|e| e.to_string());
    }
    match Store::open(&config.store.path) {
        Ok(store) => store.runs_since(since_ms).map_err(|e| e.to_string()),
        Err(StoreError::Locked { .. }) => {
            crate::memory_cmd::agent_client(config, Duration::from_secs(30))?
                .get(&format!("/runs?since_ms={since_ms}"))
                .await
        }
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    since_ms: u64,
}

/// `GET /runs?since_ms=N`: the recorded runs since then (a year at most), behind the store's
/// token, for `valor stats` while this process holds the store.
pub fn router(store: Store, token: String) -> axum::Router {
    use valor_monitor::auth::{BearerGate, require_bearer};
    let route = move |axum::extract::Query(query): axum::extract::Query<RunsQuery>| {
        let store = store.clone();
        async move {
            let floor = since_ms(MAX_DAYS);
            let read =
                tokio::task::spawn_blocking(move || store.runs_since(query.since_ms.max(floor)))
                    .await;
            match read {
                Ok(Ok(runs)) => Ok(axum::Json(runs)),
                Ok(Err(e)) => Err((axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
                Err(e) => Err((axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
            }
        }
    };
    axum::Router::new()
        .route("/runs", axum::routing::get(route))
        .route_layer(axum::middleware::from_fn_with_state(
            BearerGate::new(
                &token,
                "missing or wrong token (it is in the file <store>.api-token)",
            ),
            require_bearer,
        ))
}

fn table(out: &mut String, title: &str, rows: impl Iterator<Item = (String, RunTotals)>) {
    out.push_str(&format!("\n\n{title:<24} {HEADER}\n"));
    for (label, totals) in rows {
        out.push_str(&row(&label, &totals));
        out.push('\n');
    }
    out.pop();
}

fn report(runs: &[RunRecord], days: u32, by: Option<By>) -> String {
    let analytics = RunAnalytics::of(runs);
    let mut out = format!("runs of the last {days} day(s), UTC");
    let named = |map: &std::collections::BTreeMap<String, RunTotals>| {
        map.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    // Session summaries and the daydream are no chat's usage; their cost is shown apart.
    let chats: Vec<(String, RunTotals)> = (analytics.by_chat.iter())
        .map(|(chat, totals)| (chat.to_string(), totals.clone()))
        .chain(
            (analytics.background.turns > 0)
                .then(|| ("(background)".to_owned(), analytics.background.clone())),
        )
        .collect();
    match by {
        None => {
            out.push_str(&format!("\n\n{:<24} {HEADER}\n", "day"));
            for (day, totals) in &analytics.by_day {
                out.push_str(&row(day, totals));
                out.push('\n');
            }
            out.push_str(&row("total", &analytics.all));
            table(&mut out, "model", named(&analytics.by_model).into_iter());
            table(&mut out, "class", named(&analytics.by_class).into_iter());
            table(&mut out, "effort", named(&analytics.by_effort).into_iter());
        }
        Some(by) => {
            let (title, rows) = match by {
                By::Model => ("model", named(&analytics.by_model)),
                By::Class => ("class", named(&analytics.by_class)),
                By::Effort => ("effort", named(&analytics.by_effort)),
                By::Chat => ("chat", chats),
            };
            table(&mut out, title, rows.into_iter());
            out.push('\n');
            out.push_str(&row("total", &analytics.all));
        }
    }
    out.push('\n');
    if !analytics.errors.is_empty() {
        let list: Vec<String> = (analytics.errors.iter())
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        out.push_str(&format!("\nerrors: {}\n", list.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use valor_protocol::{Severity, TurnErrorKind, Usage};
    use valor_store::RunError;

    fn run(ms: u64, model: &str, cost: f64, error: Option<TurnErrorKind>) -> RunRecord {
        RunRecord {
            chat_id: 1,
            user_id: None,
            session_id: "s".to_owned(),
            model: model.to_owned(),
            class: String::new(),
            effort: String::new(),
            started_at_ms: ms,
            duration_ms: 2000,
            api_duration_ms: 1000,
            cost_usd: cost,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                ..Usage::default()
            },
            num_turns: 1,
            tool_calls: Vec::new(),
            warm: false,
            error: error.map(|kind| RunError {
                kind,
                severity: Severity::Low,
                detail: String::new(),
            }),
        }
    }

    #[test]
    fn totals_per_day_and_model() {
        let day = 86_400_000;
        let runs = [
            run(1_795_330_000_000, "opus", 0.5, None),
            run(
                1_795_330_000_000 + day,
                "opus",
                0.25,
                Some(TurnErrorKind::Overloaded),
            ),
            run(
                1_795_330_000_000 + day,
                "haiku",
                0.125,
                Some(TurnErrorKind::ToolDenied),
            ),
        ];
        let text = report(&runs, 2, None);
        assert!(
            text.contains(&format!(
                "{:<24} {:>6} {:>7} {:>10.4}",
                "2026-11-22", 1, 0, 0.5
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{:<24} {:>6} {:>7} {:>10.4}",
                "2026-11-23", 2, 1, 0.375
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{:<24} {:>6} {:>7} {:>10.4}",
                "total", 3, 1, 0.875
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("{:<24} {:>6} {:>7} {:>10.4}", "opus", 2, 1, 0.75)),
            "{text}"
        );
        assert!(
            text.contains("errors: overloaded 1, tool_denied 1"),
            "{text}"
        );
        assert!(
            text.contains(&format!("{:<24} {:>6} {:>7}", "(none)", 3, 1)),
            "the class table: {text}"
        );
        assert!(text.contains("\n\neffort "), "{text}");
        // One table only.
        let efforts = report(&runs, 2, Some(By::Effort));
        assert!(
            efforts.contains("\n\neffort ") && !efforts.contains("\nmodel "),
            "{efforts}"
        );
        assert!(
            efforts.contains(&format!(
                "{:<24} {:>6} {:>7} {:>10.4}",
                "total", 3, 1, 0.875
            )),
            "{efforts}"
        );
        let chats = report(&runs, 2, Some(By::Chat));
        assert!(chats.contains(&format!("{:<24} {:>6}", "1", 3)), "{chats}");
        assert!(!chats.contains("(background)"), "{chats}");
        // A session summary's run is no chat's: a row apart, in the total.
        let mut with_summary = runs.to_vec();
        let mut summary = runs[0].clone();
        summary.chat_id = valor_protocol::turn::SUMMARY_CHAT_ID;
        with_summary.push(summary);
        let chats = report(&with_summary, 2, Some(By::Chat));
        assert!(chats.contains(&format!("{:<24} {:>6}", "1", 3)), "{chats}");
        assert!(
            chats.contains(&format!("{:<24} {:>6}", "(background)", 1)),
            "{chats}"
        );
        assert!(!chats.contains(&i64::MIN.to_string()[..10]), "{chats}");
    }
}
