//! The drill-down routes: `/ui/turns` (the latest turns, filtered), `/ui/turns/<start>/<chat>`
//! (one turn whole) and `/ui/chats/<id>` (one chat). What the live stream re-renders of them
//! is here too, so a page and its stream show the same thing.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use valor_protocol::analytics::RunAnalytics;
use valor_protocol::time::now_ms;

use crate::Ui;
use crate::charts::{Chart, bucket};
use crate::handlers::refusal;
use crate::pages::{self, turns::ChatView, turns::TurnFilter};

/// Turns the Turns page lists.
pub(crate) const TURNS_LISTED: usize = 100;
/// Turns a chat's page lists.
const CHAT_TURNS: usize = 50;
/// Memories a chat's page lists.
const CHAT_MEMORIES: usize = 30;
const DAY_MS: u64 = 86_400_000;
/// The days a chat's figures and charts cover.
const CHAT_DAYS: u64 = 30;

#[derive(Deserialize, Default)]
pub(crate) struct TurnsQuery {
    #[serde(default)]
    show: Option<String>,
}

/// The Turns page's live part.
pub(crate) async fn turns_body(ui: &Ui, filter: TurnFilter) -> maud::Markup {
    let (runs, names) = (
        ui.source.latest_turns(TURNS_LISTED, filter, None).await,
        ui.source.chat_names().await,
    );
    pages::turns::turns_fragment(&runs, &names, now_ms())
}

pub(crate) async fn turns(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<TurnsQuery>,
) -> Response {
    if ui.session(&headers).await.is_none() {
        return refusal();
    }
    let filter = TurnFilter::parse(q.show.as_deref());
    let (runs, names) = (
        ui.source.latest_turns(TURNS_LISTED, filter, None).await,
        ui.source.chat_names().await,
    );
    pages::turns::turns(&runs, &names, filter, TURNS_LISTED, now_ms()).into_response()
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, pages::missing(what)).into_response()
}

pub(crate) async fn turn(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Path((started_at_ms, chat_id)): Path<(String, String)>,
) -> Response {
    if ui.session(&headers).await.is_none() {
        return refusal();
    }
    // An address that is not a turn's names nothing: the same page as a turn not found.
    let (Ok(started_at_ms), Ok(chat_id)) = (started_at_ms.parse::<u64>(), chat_id.parse::<i64>())
    else {
        return not_found("There is no such turn.");
    };
    match ui.source.turn(started_at_ms, chat_id).await {
        Some((run, text)) => {
            let names = ui.source.chat_names().await;
            pages::turns::turn(&run, text.as_ref(), &names).into_response()
        }
        None => not_found("There is no such turn."),
    }
}

/// A chat's page as it is now: figures, charts, turns (the live part), learnings, memories.
pub(crate) async fn chat_view(ui: &Ui, chat_id: i64) -> (ChatView, Vec<Chart<'static>>) {
    let now = now_ms();
    let since = (now / DAY_MS).saturating_sub(CHAT_DAYS - 1) * DAY_MS;
    let s = &ui.source;
    let (runs, turns, row, names) = (
        s.runs_since(since).await,
        s.latest_turns(CHAT_TURNS, TurnFilter::All, Some(chat_id))
            .await,
        s.chat(chat_id).await,
        s.chat_names().await,
    );
    let mine: Vec<_> = runs.into_iter().filter(|r| r.chat_id == chat_id).collect();
    let totals = RunAnalytics::of(&mine).all;
    let day = |f: &dyn Fn(&valor_protocol::records::RunRecord) -> f64| {
        bucket(
            mine.iter().map(|r| (r.started_at_ms, f(r))),
            now,
            DAY_MS,
            CHAT_DAYS as usize,
        )
    };
    let charts = vec![
        Chart {
            title: "Spend per day",
            unit: "$",
            points: day(&|r| r.cost_usd),
            bucket_ms: DAY_MS,
            bars: true,
            ..Chart::default()
        },
        Chart {
            title: "Turns per day",
            unit: "turns",
            points: day(&|_| 1.0),
            bucket_ms: DAY_MS,
            bars: true,
            ..Chart::default()
        },
    ];
    let view = ChatView {
        chat_id,
        name: names.get(&chat_id).cloned(),
        row,
        totals,
        turns,
        learnings: Vec::new(),
        memories: Vec::new(),
    };
    (view, charts)
}

/// The live part of a chat's page.
pub(crate) async fn chat_body(ui: &Ui, chat_id: i64) -> maud::Markup {
    let (view, charts) = chat_view(ui, chat_id).await;
    let names = ui.source.chat_names().await;
    pages::turns::chat_fragment(&view, &charts, &names, now_ms())
}

pub(crate) async fn chat(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Path(chat_id): Path<String>,
) -> Response {
    if ui.session(&headers).await.is_none() {
        return refusal();
    }
    let Ok(chat_id) = chat_id.parse::<i64>() else {
        return not_found("There is no such chat.");
    };
    let (mut view, charts) = chat_view(&ui, chat_id).await;
    if view.row.is_none() && view.turns.is_empty() {
        return not_found("There is no such chat.");
    }
    let names = ui.source.chat_names().await;
    view.learnings = (ui.source.learnings().await.into_iter())
        .filter(|l| l.chat_id == Some(chat_id))
        .collect();
    view.memories = ui.source.chat_memories(chat_id, CHAT_MEMORIES).await;
    pages::turns::chat(&view, &charts, &names, now_ms()).into_response()
}
