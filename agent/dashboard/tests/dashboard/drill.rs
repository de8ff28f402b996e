//! The drill-down pages on a planted history: the Turns list (chats named, Valor's own runs
//! named and apart, tools with their inputs, errors by kind), one turn whole, one chat; and
//! every page's figures equal to the analytics `valor stats --json` prints.

use std::sync::Arc;

use axum::http::StatusCode;
use valor_protocol::TurnErrorKind;
use valor_protocol::analytics::{RunAnalytics, RunTotals};
use valor_protocol::records::{RunRecord, TurnText};
use valor_protocol::turn::{DAYDREAM_CHAT_ID, SUMMARY_CHAT_ID};

use super::{Fake, get, log_in, router, send};

const DAY_MS: u64 = 86_400_000;

struct Planted {
    chat_id: i64,
    ago_ms: u64,
    model: &'static str,
    cost: f64,
    error: Option<TurnErrorKind>,
    tools: Vec<(&'static str, bool, &'static str)>,
}

fn planted(p: &Planted, now: u64) -> RunRecord {
    let tools: Vec<serde_json::Value> = (p.tools.iter().enumerate())
        .map(|(i, (name, ok, input))| {
            serde_json::json!({"id": format!("t{i}"), "name": name, "ok": ok, "input": input})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "chat_id": p.chat_id, "session_id": "s-1", "model": p.model, "class": "development",
        "effort": "high", "started_at_ms": now - p.ago_ms, "duration_ms": 2500,
        "api_duration_ms": 2000, "cost_usd": p.cost,
        "usage": {"input_tokens": 300, "output_tokens": 40, "cache_read_input_tokens": 1000,
                  "cache_creation_input_tokens": 0},
        "num_turns": 2, "tool_calls": tools, "warm": true,
        "error": p.error.map(|kind| serde_json::json!({
            "kind": kind, "severity": "low", "detail": format!("{kind:?} <detail>")
        })),
    }))
    .unwrap()
}

/// Two chats (one named on Telegram), a denied tool, an overload, the daydream and a session
/// summary today, and a turn two days ago.
fn history(now: u64) -> Vec<RunRecord> {
    let p = |chat_id, ago_ms, model, cost, error, tools| Planted {
        chat_id,
        ago_ms,
        model,
        cost,
        error,
        tools,
    };
    let today = now % DAY_MS;
    // Today's runs fall after midnight however early in the day the test runs.
    let at = |i: u64| (today / 8).max(1) * i / 8 + 1;
    let planted_runs = [
        p(42, 2 * DAY_MS, "opus", 0.5, None, vec![]),
        p(
            42,
            at(7),
            "opus",
            0.10,
            None,
            vec![
                ("Bash", true, "ls -la <dir>"),
                ("Read", true, "/w/src/main.rs"),
            ],
        ),
        p(
            42,
            at(6),
            "haiku",
            0.02,
            Some(TurnErrorKind::ToolDenied),
            vec![("Bash", false, "rm -rf /")],
        ),
        p(
            7,
            at(5),
            "sonnet",
            0.05,
            Some(TurnErrorKind::Overloaded),
            vec![],
        ),
        p(
            DAYDREAM_CHAT_ID,
            at(4),
            "opus",
            0.30,
            None,
            vec![("Glob", true, "**/*.rs")],
        ),
        p(SUMMARY_CHAT_ID, at(3), "haiku", 0.01, None, vec![]),
    ];
    planted_runs.iter().map(|r| planted(r, now)).collect()
}

fn app_with(runs: Vec<RunRecord>, texts: Vec<TurnText>) -> axum::Router {
    let fake = Fake {
        history: Some(runs),
        texts,
        ..Fake::default()
    };
    router(Arc::new(fake), valor_dashboard::logs::LogRing::default())
}

/// The rows of the first table in `html` after `marker`, cells as text.
fn rows_after(html: &str, marker: &str) -> Vec<Vec<String>> {
    let from = html.find(marker).unwrap_or(0);
    let table = &html[from..];
    let table = &table[..table.find("</table>").unwrap_or(table.len())];
    table
        .split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let inner = &cell[cell.find('>').map_or(0, |i| i + 1)..];
                    let mut text = String::new();
                    let mut tag = false;
                    for c in inner.split("</td>").next().unwrap_or_default().chars() {
                        match c {
                            '<' => tag = true,
                            '>' => tag = false,
                            c if !tag => text.push(c),
                            _ => {}
                        }
                    }
                    text
                })
                .collect()
        })
        .filter(|cells: &Vec<String>| !cells.is_empty())
        .collect()
}

#[tokio::test]
async fn the_turns_list_names_chats_and_internal_runs_with_tool_inputs_and_error_kinds() {
    let now = valor_protocol::time::now_ms();
    let app = app_with(history(now), Vec::new());
    let cookie = log_in(&app).await;
    let (status, _, page) = send(&app, get("/ui/turns", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    let rows = rows_after(&page, "<table class=\"stack turns\"");
    assert_eq!(rows.len(), 6, "{rows:?}");
    // Newest first: the summary, the daydream, chat 7, then chat 42 (named on Telegram).
    assert!(
        rows[0][1].contains("internal: session summary"),
        "{:?}",
        rows[0]
    );
    assert!(rows[1][1].contains("internal: daydream"), "{:?}", rows[1]);
    assert_eq!(rows[2][1], "chat 7");
    assert_eq!(rows[3][1], "Ops &lt;team&gt; (42)");
    assert_eq!(rows[3][9], "tool_denied", "a denied tool shows as such");
    assert_eq!(rows[2][9], "overloaded");
    assert!(
        rows[4][8].contains("Bash ls -la &lt;dir&gt;"),
        "{:?}",
        rows[4]
    );
    assert!(rows[3][8].contains("Bash ✗ rm -rf /"), "{:?}", rows[3]);
    assert_eq!(
        rows[4][2..8],
        [
            "opus",
            "development · high",
            "2.5 s",
            "1300",
            "40",
            "$0.1000"
        ]
    );
    assert!(
        page.contains("data-live=\"/ui/events?page=turns&amp;show=all\""),
        "live"
    );

    for (show, expected) in [("internal", 2), ("chats", 4), ("errors", 2)] {
        let (_, _, page) = send(&app, get(&format!("/ui/turns?show={show}"), Some(&cookie))).await;
        let rows = rows_after(&page, "<table class=\"stack turns\"");
        assert_eq!(rows.len(), expected, "{show}: {rows:?}");
        let internal = rows.iter().filter(|r| r[1].contains("internal:")).count();
        match show {
            "internal" => assert_eq!(internal, 2),
            "chats" => assert_eq!(internal, 0),
            _ => assert!(rows.iter().all(|r| r[9] != "ok"), "{rows:?}"),
        }
    }
}

#[tokio::test]
async fn a_turns_page_shows_its_prompt_answer_and_tool_inputs_escaped() {
    let now = valor_protocol::time::now_ms();
    let runs = history(now);
    let kept = &runs[1];
    let text = TurnText {
        chat_id: 42,
        started_at_ms: kept.started_at_ms,
        prompt: "<context>…</context>\nWhy is the build <b>slow</b>? key [redacted]".into(),
        answer: "Because of <script>alert(1)</script> LTO.".into(),
        tool_inputs: vec![(
            "t0".into(),
            "{\"command\":\"ls -la <dir>\",\"timeout\":5}".into(),
        )],
    };
    let app = app_with(runs.clone(), vec![text]);
    let cookie = log_in(&app).await;
    let path = format!("/ui/turns/{}/42", kept.started_at_ms);
    let (status, _, page) = send(&app, get(&path, Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("Why is the build &lt;b&gt;slow&lt;/b&gt;? key [redacted]"),
        "{page}"
    );
    assert!(
        page.contains("Because of &lt;script&gt;alert(1)&lt;/script&gt; LTO."),
        "{page}"
    );
    assert!(!page.contains("<script>alert(1)"), "escaped");
    // The whole input where kept; the short one for a call whose whole input is not.
    assert!(
        page.contains("{&quot;command&quot;:&quot;ls -la &lt;dir&gt;&quot;,&quot;timeout&quot;:5}"),
        "{page}"
    );
    assert!(
        page.contains("<pre class=\"text\">/w/src/main.rs</pre>"),
        "{page}"
    );
    assert!(page.contains("1000 from cache"), "{page}");

    // A turn whose text is no longer kept still shows its figures.
    let old = &runs[0];
    let (status, _, page) = send(
        &app,
        get(
            &format!("/ui/turns/{}/42", old.started_at_ms),
            Some(&cookie),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("no longer kept") && page.contains("$0.5000"),
        "{page}"
    );
    // The daydream's run is named, not a chat.
    let daydream = &runs[4];
    let path = format!("/ui/turns/{}/{DAYDREAM_CHAT_ID}", daydream.started_at_ms);
    let (_, _, page) = send(&app, get(&path, Some(&cookie))).await;
    assert!(page.contains("internal: daydream"), "{page}");

    for (path, status) in [
        (
            format!("/ui/turns/{}/43", kept.started_at_ms),
            StatusCode::NOT_FOUND,
        ),
        ("/ui/turns/1/42".to_owned(), StatusCode::NOT_FOUND),
        ("/ui/turns/x/42".to_owned(), StatusCode::NOT_FOUND),
        ("/ui/turns/1/%3Cscript%3E".to_owned(), StatusCode::NOT_FOUND),
    ] {
        let (got, _, body) = send(&app, get(&path, Some(&cookie))).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            body.contains("There is no such turn.") && !body.contains("<script>alert"),
            "{body}"
        );
    }
    let (status, _, _) = send(&app, get(&path, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a turn needs a login");
}

#[tokio::test]
async fn a_chats_page_shows_its_turns_spend_learnings_and_memories() {
    let now = valor_protocol::time::now_ms();
    let runs = history(now);
    let app = app_with(runs.clone(), Vec::new());
    let cookie = log_in(&app).await;
    let (status, _, page) = send(&app, get("/ui/chats/42", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<h1>Ops &lt;team&gt; (42)</h1>"), "{page}");
    let mine: Vec<&RunRecord> = runs.iter().filter(|r| r.chat_id == 42).collect();
    let totals = RunAnalytics::of(mine.iter().copied()).all;
    assert!(
        page.contains(&format!(
            "Spend (30 d)</div><div class=\"big\">${:.4}</div>",
            totals.cost_usd
        )),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "Turns (30 d)</div><div class=\"big\">{}</div><div>0 failed",
            totals.turns
        )),
        "{page}"
    );
    let rows = rows_after(&page, "<table class=\"stack turns\"");
    assert_eq!(rows.len(), 3, "its turns only: {rows:?}");
    assert!(page.contains("We use sled"), "its learning: {page}");
    assert!(
        !page.contains("Tabs"),
        "a shared learning is not this chat's: {page}"
    );
    assert!(
        page.contains("We moved the &lt;deploy&gt; to Fridays"),
        "{page}"
    );
    assert!(
        page.contains("<title>Spend per day</title>") || page.contains("Spend per day"),
        "{page}"
    );
    assert!(
        page.contains("data-live=\"/ui/events?page=chat&amp;chat=42\""),
        "{page}"
    );

    let (status, _, _) = send(&app, get("/ui/chats/99", Some(&cookie))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a chat nobody wrote in");
    let (status, _, _) = send(&app, get("/ui/chats/forty", Some(&cookie))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// What a card shows: its big figure, and the first amount in dollars on it.
fn card(page: &str, title: &str) -> (String, String) {
    let at = page
        .find(&format!("<div>{title}</div>"))
        .unwrap_or_else(|| panic!("{title}: {page}"));
    let rest = &page[at..];
    let big = rest.split("<div class=\"big\">").nth(1).unwrap();
    let big = big.split('<').next().unwrap().to_owned();
    let cost = rest
        .split('$')
        .nth(1)
        .unwrap()
        .split(['<', ' '])
        .next()
        .unwrap();
    (big, format!("${cost}"))
}

fn figures(t: &RunTotals) -> (String, String) {
    (t.turns.to_string(), money(t))
}

fn money(t: &RunTotals) -> String {
    format!("${:.4}", t.cost_usd)
}

#[tokio::test]
async fn every_page_shows_the_same_figures_as_the_analytics_valor_stats_prints() {
    let now = valor_protocol::time::now_ms();
    let runs = history(now);
    let app = app_with(runs.clone(), Vec::new());
    let cookie = log_in(&app).await;
    // What `valor stats --json --days 1` prints: the analytics of today's runs.
    let today_start = now / DAY_MS * DAY_MS;
    let today = RunAnalytics::of(runs.iter().filter(|r| r.started_at_ms >= today_start));
    assert_eq!(
        (today.chats().turns, today.background.turns),
        (3, 2),
        "the plant"
    );

    let (_, _, overview) = send(&app, get("/ui/", Some(&cookie))).await;
    assert_eq!(card(&overview, "Chat turns today"), figures(&today.chats()));
    assert_eq!(
        card(&overview, "Internal runs today"),
        figures(&today.background)
    );

    let (_, _, usage) = send(&app, get("/ui/usage?days=1", Some(&cookie))).await;
    assert_eq!(card(&usage, "Chat turns"), figures(&today.chats()));
    assert_eq!(card(&usage, "Internal runs"), figures(&today.background));
    assert_eq!(card(&usage, "All runs"), figures(&today.all));
    let by_chat = rows_after(&usage, "<h2>By chat</h2>");
    for (chat, t) in &today.by_chat {
        let row = (by_chat.iter())
            .find(|r| r[0].contains(&format!("({chat})")) || r[0] == format!("chat {chat}"))
            .unwrap_or_else(|| panic!("chat {chat}: {by_chat:?}"));
        assert_eq!(
            row[1..4],
            [t.turns.to_string(), t.failed.to_string(), money(t)],
            "chat {chat}"
        );
    }
    let internal = by_chat.iter().find(|r| r[0] == "internal runs").unwrap();
    assert_eq!(
        internal[1..4],
        [
            today.background.turns.to_string(),
            today.background.failed.to_string(),
            money(&today.background)
        ]
    );
    let errors = rows_after(&usage, "<h2>Errors by kind</h2>");
    for (kind, count) in &today.errors {
        assert!(
            errors.contains(&vec![kind.clone(), count.to_string()]),
            "{kind}: {errors:?}"
        );
    }
    let tools = rows_after(&usage, "<h2>Tools used</h2>");
    for (tool, count) in &today.tools {
        assert!(
            tools.contains(&vec![tool.clone(), count.to_string()]),
            "{tool}: {tools:?}"
        );
    }

    // Seven days: the run of two days ago joins chat 42's figures on Usage and its page.
    let week = RunAnalytics::of(&runs);
    let (_, _, usage) = send(&app, get("/ui/usage?days=7", Some(&cookie))).await;
    assert_eq!(card(&usage, "Chat turns"), figures(&week.chats()));
    let (_, _, chat) = send(&app, get("/ui/chats/42", Some(&cookie))).await;
    assert_eq!(card(&chat, "Spend (30 d)").0, money(&week.by_chat[&42]));
    assert_eq!(
        card(&chat, "Turns (30 d)").0,
        week.by_chat[&42].turns.to_string()
    );
    let (_, _, turns) = send(&app, get("/ui/turns", Some(&cookie))).await;
    let listed = rows_after(&turns, "<table class=\"stack turns\"");
    let listed_cost: f64 = (listed.iter())
        .map(|r| r[7].trim_start_matches('$').parse::<f64>().unwrap())
        .sum();
    assert_eq!(listed.len() as u64, week.all.turns);
    assert!(
        (listed_cost - week.all.cost_usd).abs() < 1e-9,
        "{listed_cost}"
    );
}
