//! The routes of what the operator reviews and decides: Alerts (acknowledge, silence) and
//! Memory (search with scores and filters, questions accepted or declined, learnings
//! forgotten). Every decision goes through the agent (the conversation service, the monitor),
//! never around it.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::handlers::{CsrfField, Done, back, csrf_field, refusal};
use crate::live::Topic;
use crate::pages::review::{self, MemoryView};
use crate::{MemoryQuery, Ui, pages};

/// Memory hits listed.
const HITS: usize = 20;
/// Questions listed.
const QUESTIONS: usize = 50;

/// Approvals listed.
const APPROVALS: usize = 200;

pub(crate) async fn approvals(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    if ui.session(&headers).await.is_none() {
        return refusal();
    }
    let (records, names) = (
        ui.source.approvals(None, APPROVALS).await,
        ui.source.chat_names().await,
    );
    pages::approvals::approvals(&records, &names).into_response()
}

/// The live part of the Approvals page.
pub(crate) async fn approvals_body(ui: &Ui) -> maud::Markup {
    let (records, names) = (
        ui.source.approvals(None, APPROVALS).await,
        ui.source.chat_names().await,
    );
    pages::approvals::approvals_fragment(&records, &names)
}

pub(crate) async fn alerts(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(done): Query<Done>,
) -> Response {
    let Some(session) = ui.session(&headers).await else {
        return refusal();
    };
    let (rows, silences) = (ui.source.alerts().await, ui.source.silences().await);
    review::alerts(&rows, &silences, &session.csrf, done.text()).into_response()
}

#[derive(Deserialize)]
pub(crate) struct AlertForm {
    csrf: String,
    kind: String,
}

#[derive(Deserialize)]
pub(crate) struct SilenceForm {
    csrf: String,
    kind: String,
    /// 0 lifts the silence.
    hours: u32,
}

#[derive(Deserialize)]
pub(crate) struct DecideForm {
    csrf: String,
    chat_id: i64,
    id: u64,
    yes: bool,
}

#[derive(Deserialize)]
pub(crate) struct ForgetForm {
    csrf: String,
    chat_id: i64,
    number: u64,
}

csrf_field!(AlertForm, SilenceForm, DecideForm, ForgetForm);

pub(crate) async fn acknowledge(
    State(ui): State<Ui>,
    headers: HeaderMap,
    form: Result<Form<AlertForm>, FormRejection>,
) -> Response {
    let form = match ui.form(&headers, form).await {
        Ok((form, _)) => form,
        Err(refused) => return refused,
    };
    let done = ui.source.acknowledge_alert(&form.kind).await;
    ui.pulse.bump(Topic::Alerts);
    back("/ui/alerts", &done)
}

pub(crate) async fn silence(
    State(ui): State<Ui>,
    headers: HeaderMap,
    form: Result<Form<SilenceForm>, FormRejection>,
) -> Response {
    let form = match ui.form(&headers, form).await {
        Ok((form, _)) => form,
        Err(refused) => return refused,
    };
    // A week at most: a silence is a pause, not a way to switch alerts off.
    let done = ui
        .source
        .silence_alert(&form.kind, form.hours.min(168))
        .await;
    ui.pulse.bump(Topic::Alerts);
    back("/ui/alerts", &done)
}

#[derive(Deserialize, Default)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    chat: Option<String>,
    #[serde(default)]
    days: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

impl SearchQuery {
    /// The search asked for; empty or unreadable filters are no filter.
    fn query(&self) -> MemoryQuery {
        let kind = (self.kind.as_deref().map(str::trim)).filter(|k| !k.is_empty());
        MemoryQuery {
            text: self.q.trim().chars().take(1_000).collect(),
            chat: (self.chat.as_deref()).and_then(|c| c.trim().parse().ok()),
            kind: kind.map(|k| k.chars().take(20).collect()),
            days: (self.days.as_deref())
                .and_then(|d| d.trim().parse::<u32>().ok())
                .map(|d| d.clamp(1, 3660)),
        }
    }
}

pub(crate) async fn memory_page(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Response {
    let Some(session) = ui.session(&headers).await else {
        return refusal();
    };
    let query = q.query();
    let mut hits = if query.text.is_empty() {
        Vec::new()
    } else {
        ui.source.search(&query).await
    };
    hits.truncate(HITS);
    let (mut questions, learnings) = (ui.source.questions().await, ui.source.learnings().await);
    // Accepted ones are learnings now (listed below): the open and declined ones are asked about.
    questions.retain(|q| q.state != "accepted");
    questions.truncate(QUESTIONS);
    let done = q.done.as_deref().map(|d| d.get(..300).unwrap_or(d));
    let view = MemoryView {
        query: &query,
        hits: &hits,
        questions: &questions,
        learnings: &learnings,
    };
    review::memory(&view, &session.csrf, done).into_response()
}

pub(crate) async fn memory_one(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if ui.session(&headers).await.is_none() {
        return refusal();
    }
    let row = match id.parse::<u64>() {
        Ok(id) => ui.source.memory(id).await,
        Err(_) => None,
    };
    match row {
        Some(row) => review::memory_one(&row).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            pages::missing("There is no such memory."),
        )
            .into_response(),
    }
}

pub(crate) async fn decide(
    State(ui): State<Ui>,
    headers: HeaderMap,
    form: Result<Form<DecideForm>, FormRejection>,
) -> Response {
    let form = match ui.form(&headers, form).await {
        Ok((form, _)) => form,
        Err(refused) => return refused,
    };
    let done = (ui.source)
        .decide_question(form.chat_id, form.id, form.yes)
        .await;
    back("/ui/memory", &done)
}

pub(crate) async fn forget(
    State(ui): State<Ui>,
    headers: HeaderMap,
    form: Result<Form<ForgetForm>, FormRejection>,
) -> Response {
    let form = match ui.form(&headers, form).await {
        Ok((form, _)) => form,
        Err(refused) => return refused,
    };
    let done = ui.source.forget(form.chat_id, form.number).await;
    back("/ui/memory", &done)
}
