//! The memory API: while the agent runs it owns the store, so `valor memory ...` and the tool
//! servers reach memory through these routes on the agent's loopback port. Every route wants
//! the token in `<store>.api-token` (`Authorization: Bearer ...`): memory holds private chats.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query as QueryParams, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use valor_monitor::auth::{BearerGate, require_bearer};
use valor_protocol::memory::{MemoryCounts, validate};
use valor_protocol::records::{MemoryKind, MemoryRecord};

use crate::catalogue::Filter;
use crate::search::Query;
use crate::service::Memory;
use crate::transfer;

/// Largest import accepted in one request.
const MAX_IMPORT_BYTES: usize = 512 * 1024 * 1024;

#[derive(Clone)]
struct ApiState {
    memory: Memory,
}

/// The routes, under `/memory`.
pub fn router(memory: Memory, token: String) -> Router {
    Router::new()
        .route("/memory/search", get(search))
        .route("/memory/stats", get(stats))
        .route("/memory/learnings", get(learnings))
        .route("/memory/item/{id}", get(item))
        .route("/memory/save", post(save))
        .route("/memory/reindex", post(reindex))
        .route("/memory/export", get(export))
        .route("/memory/import", post(import))
        .layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES))
        // Checked before any handler reads a body: a stranger's upload is never read.
        .route_layer(axum::middleware::from_fn_with_state(
            BearerGate::new(
                &token,
                "missing or wrong token (it is in the file <store>.api-token)",
            ),
            require_bearer,
        ))
        .with_state(ApiState { memory })
}

/// Search parameters as a query string.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SearchParams {
    pub q: String,
    pub chat: Option<i64>,
    /// Comma-separated kinds.
    pub kind: Option<String>,
    pub limit: Option<usize>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

impl SearchParams {
    /// The query these parameters ask for, or why they are wrong.
    pub fn to_query(&self) -> Result<Query, String> {
        let kinds = match &self.kind {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .filter(|k| !k.trim().is_empty())
                .map(|k| {
                    MemoryKind::parse(k.trim()).ok_or_else(|| {
                        format!("unknown kind {k:?}: message, link, learning or insight")
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if self.q.trim().is_empty() {
            return Err("the query is empty".to_owned());
        }
        Ok(Query {
            text: self.q.clone(),
            filter: Filter {
                chat_id: self.chat,
                kinds,
                since_ms: self.since_ms,
                until_ms: self.until_ms,
                ..Filter::default()
            },
            limit: self.limit.unwrap_or(10),
        })
    }
}

/// What `/memory/stats` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryStats {
    pub state: serde_json::Value,
    #[serde(flatten)]
    pub counts: MemoryCounts,
    pub indexed: u64,
    pub model: Option<String>,
}

impl MemoryStats {
    pub fn of(memory: &Memory) -> MemoryStats {
        MemoryStats {
            state: serde_json::to_value(memory.state())
                .unwrap_or_else(|_| json!({"state": "unknown"})),
            counts: memory.counts(),
            indexed: memory.indexed_vectors() as u64,
            model: memory.model_id(),
        }
    }
}

/// An error answer: its status and a JSON `{"error": ...}` body.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

async fn search(
    State(state): State<ApiState>,
    QueryParams(params): QueryParams<SearchParams>,
) -> Response {
    let query = match params.to_query() {
        Ok(query) => query,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason).into_response(),
    };
    match state.memory.search(&query).await {
        Ok(result) => axum::Json(result).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn stats(State(state): State<ApiState>) -> Response {
    axum::Json(MemoryStats::of(&state.memory)).into_response()
}

/// Every learning record, retired ones too (for `valor learnings`).
async fn learnings(State(state): State<ApiState>) -> Response {
    match state.memory.store().all_learnings().await {
        Ok(records) => axum::Json(records).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn item(State(state): State<ApiState>, Path(id): Path<u64>) -> Response {
    match crate::port::document(state.memory.store(), id).await {
        Ok(Some(document)) => axum::Json(document).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("memory {id} is not in the store"),
        )
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn save(
    State(state): State<ApiState>,
    axum::Json(record): axum::Json<MemoryRecord>,
) -> Response {
    if let Err(invalid) = validate(&record) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, invalid.to_string()).into_response();
    }
    match state.memory.store().save_memories(vec![record]).await {
        Ok(mut saved) if saved.len() == 1 => {
            (StatusCode::CREATED, axum::Json(saved.remove(0))).into_response()
        }
        Ok(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store saved no record",
        )
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn reindex(State(state): State<ApiState>) -> Response {
    state.memory.request_reindex();
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"reindex": "started"})),
    )
        .into_response()
}

async fn export(State(state): State<ApiState>) -> Response {
    let mut body = Vec::new();
    match transfer::export(state.memory.store(), &mut body).await {
        Ok(_) => ([(header::CONTENT_TYPE, "application/jsonl")], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn import(State(state): State<ApiState>, body: Bytes) -> Response {
    match transfer::import(state.memory.store(), &mut body.as_ref()).await {
        Ok(moved) => axum::Json(moved).into_response(),
        Err(e @ transfer::TransferError::BadInput { .. }) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
