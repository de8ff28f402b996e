//! The memory tools' three layers against pasting full records: tokens read to answer 20
//! "what did we do about X" questions, tokens injected per turn, and how often the answer is
//! found; and the cost of extracting a turn's observations.
//!
//! `cargo bench -p valor-memory --bench disclosure` (needs scripts/setup for the model).
//!
//! A chat's memory is 20 topics (each: the request, the reply, the observation the turn left)
//! among 2,000 other messages of the chat corpus (a user's message one sentence, a reply twenty,
//! about 300 tokens, as replies in a coding chat run). The 20 questions ask about the topics in other
//! words than the stored text; they were written before the bench first ran and were not tuned
//! to it. The "model" is scripted: search, take the best observation hit (else the best hit),
//! read the timeline around it, get that one record. The alternative pastes the full records
//! of the same ten hits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Instant;

use serde_json::json;
use valor_core::inject::{ContextData, inject_counted};
use valor_core::observe::{Activity, Observation, ObservationType, observe};
use valor_core::recall::{PromptBudget, Recall};
use valor_memory::{Memory, MemorySettings};
use valor_protocol::Role;
use valor_store::{Store, StoredMessage};
use valor_tool_memory::{MemoryBook, MemoryServer, SearchRequest};
use valor_tools::{Scope, ScopeSource};

const CHAT: i64 = 7;

/// (what was asked, what was answered, files changed, the question asked later)
const TOPICS: [(&str, &str, &str, &str); 20] = [
    (
        "Uploads over 1 GB fail after 30 seconds",
        "The nginx proxy_read_timeout was 30 s; raised it to 300 s and added a test upload.",
        "deploy/nginx.conf",
        "what did we do about big file uploads timing out?",
    ),
    (
        "The login page is blank in Safari",
        "Safari lacked the Intl.Segmenter polyfill; added it to the entry bundle.",
        "web/src/polyfills.ts",
        "how was the empty sign-in screen on Apple's browser solved?",
    ),
    (
        "Switch the job queue from Redis to Postgres",
        "Jobs now live in a jobs table with SKIP LOCKED; Redis is gone from docker-compose.",
        "worker/queue.rs",
        "why and how did we move background tasks off Redis?",
    ),
    (
        "Invoices show the wrong currency for Swiss customers",
        "The locale fallback took de-DE; now the billing country picks CHF.",
        "billing/currency.py",
        "what was wrong with the money symbol on bills for Switzerland?",
    ),
    (
        "Memory leak in the websocket hub",
        "Closed sockets stayed in the broadcast map; they are removed on close now and the map is bounded.",
        "server/hub.rs",
        "did we ever find why the realtime server kept growing in RAM?",
    ),
    (
        "Add dark mode to the dashboard",
        "Dark theme via CSS variables and prefers-color-scheme, with a toggle in settings.",
        "web/src/theme.css",
        "how did we build the night theme for the admin panel?",
    ),
    (
        "CI takes 40 minutes",
        "Cached the cargo registry and target dir, split tests in 4 shards: 11 minutes now.",
        ".github/workflows/ci.yml",
        "what made the pipeline so much faster?",
    ),
    (
        "Password reset emails go to spam",
        "Added SPF and DKIM records and moved sending to the transactional domain.",
        "infra/dns.tf",
        "what did we change so account recovery mails stop landing in junk?",
    ),
    (
        "The search results are slow on large accounts",
        "Added a GIN index on documents.tsv and paginated the query.",
        "db/migrations/0042_gin.sql",
        "how was lookup speed fixed for big customers?",
    ),
    (
        "Crash when the CSV import has an empty line",
        "The parser skipped the header check on blank rows; blank rows are ignored now, with a test.",
        "import/csv.rs",
        "what happened with spreadsheet imports blowing up on blank rows?",
    ),
    (
        "Rate limit the public API",
        "Token bucket per API key, 100 requests a minute, 429 with Retry-After.",
        "api/limits.rs",
        "how do we throttle third-party callers now?",
    ),
    (
        "Timezone bug in the weekly report",
        "Reports used server UTC for week boundaries; they use the account's timezone now.",
        "reports/weekly.py",
        "why were the Monday summaries off by a day for some people?",
    ),
    (
        "Mobile app crashes on Android 14 at start",
        "A foreground service type was missing in the manifest; declared dataSync.",
        "android/app/AndroidManifest.xml",
        "what broke the phone app launch on the newest Android?",
    ),
    (
        "Images are too big on the product page",
        "Generated WebP variants at 3 widths with srcset; page weight halved.",
        "web/src/images.ts",
        "how did we slim down pictures on item pages?",
    ),
    (
        "Duplicate charges when users double-click pay",
        "Idempotency keys on the payment request; the button is disabled while pending.",
        "billing/checkout.rs",
        "what stopped customers from being billed twice?",
    ),
    (
        "Logs fill the disk on the worker host",
        "Log rotation with logrotate, 7 days kept, gzip, and debug logs off in production.",
        "infra/logrotate.conf",
        "how did we keep the worker machine's storage from filling up?",
    ),
    (
        "Upgrade to Python 3.12",
        "Bumped the base image, replaced distutils, fixed two deprecation errors in tests.",
        "Dockerfile",
        "what was involved in moving to the new interpreter version?",
    ),
    (
        "Feature flag for the new editor",
        "Flag new_editor in the flags table, read once per request, default off.",
        "web/src/flags.ts",
        "how is the rich text editor rollout gated?",
    ),
    (
        "Backups were never tested",
        "Nightly restore of the last backup into a scratch database, alert if it fails.",
        "ops/restore_check.sh",
        "what did we set up to prove the backups actually work?",
    ),
    (
        "Users cannot delete their account",
        "Added account deletion with a 14-day grace period and a confirmation email.",
        "api/account.rs",
        "how can people remove their profile now?",
    ),
];

fn message(chat_id: i64, role: Role, text: &str, at_ms: u64) -> StoredMessage {
    StoredMessage {
        chat_id,
        seq: 0,
        role,
        text: text.to_owned(),
        at_ms,
        user_id: Some(1),
        username: Some("ann".to_owned()),
        source: None,
    }
}

fn params<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// Fills chat 7's memory; returns the observation id of each topic.
fn fill(store: &Store) -> Vec<u64> {
    // A user's message is a sentence; a reply, as in a coding chat, some twenty (~300 tokens).
    let noise = valor_fakes::corpus::sentences(31, 2_000 * 11);
    let mut sentences = noise.iter();
    let mut at = 1_790_000_000_000u64;
    let mut answers = Vec::new();
    for (asked, answered, file, _) in TOPICS {
        for j in 0..100 {
            let (role, count) = if j % 2 == 0 {
                (Role::User, 1)
            } else {
                (Role::Assistant, 20)
            };
            let text: Vec<&str> = sentences.by_ref().take(count).map(String::as_str).collect();
            store
                .append_message(message(CHAT, role, &text.join(" "), at), false)
                .unwrap();
            at += 60_000;
        }
        store
            .append_message(message(CHAT, Role::User, asked, at), false)
            .unwrap();
        store
            .append_message(message(CHAT, Role::Assistant, answered, at + 1_000), false)
            .unwrap();
        let observation = Observation {
            kind: ObservationType::Bugfix,
            title: format!("[bugfix] {asked} — changed {file}"),
            summary: format!("Asked: {asked}\nDone: {answered}"),
            files_read: vec![],
            files_changed: vec![file.to_owned()],
            functions: vec![],
            commands: vec!["cargo test".to_owned()],
            sources: vec![],
        };
        // Kept at the time of its turn, as the engine keeps it.
        let id = store
            .save_memory(valor_store::MemoryRecord {
                id: 0,
                kind: valor_store::MemoryKind::Observation,
                chat_id: Some(CHAT),
                at_ms: at + 2_000,
                title: observation.title.clone(),
                text: observation.text(),
                url: None,
            })
            .unwrap()
            .id;
        answers.push(id);
        at += 3_600_000;
    }
    store.flush().unwrap();
    answers
}

fn main() {
    let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    let store = Store::open(&store_path).unwrap();
    let memory = Memory::open(
        std::sync::Arc::new(store.clone()),
        MemorySettings::beside(&store_path, model_dir),
    )
    .unwrap();
    let answers = fill(&store);
    runtime
        .block_on(memory.work_until_idle(&|_, _| {}))
        .unwrap();
    let server = MemoryServer::new(
        std::sync::Arc::new(memory.clone()),
        ScopeSource {
            fixed: Some(Scope::for_chat(dir.path(), CHAT)),
            chats: valor_chatfs::ChatFs::new(
                dir.path().to_owned(),
                dir.path().join(".homes"),
                None,
            ),
            hosted: false,
        },
    );

    let (mut layered, mut pasted, mut injected) = (0usize, 0usize, 0usize);
    let (mut found_layered, mut found_index) = (0, 0);
    for ((_, _, _, question), answer) in TOPICS.iter().zip(&answers) {
        // Three layers: the index, the timeline around the best observation, that record.
        let index = runtime
            .block_on(server.search_text(CHAT, params(json!({"query": question, "chat_id": CHAT}))))
            .unwrap();
        let request = SearchRequest {
            query: (*question).to_owned(),
            limit: 10,
            ..SearchRequest::default()
        };
        let hits = runtime
            .block_on(MemoryBook::search(&memory, CHAT, &request))
            .unwrap();
        let pick = hits
            .iter()
            .find(|h| h.kind == "observation")
            .or(hits.first())
            .unwrap()
            .id;
        let timeline = runtime
            .block_on(server.timeline_text(
                CHAT,
                params(json!({"anchor_id": pick, "chat_id": CHAT, "before": 2, "after": 2})),
            ))
            .unwrap();
        let record = runtime
            .block_on(server.get_text(CHAT, params(json!({"ids": [pick], "chat_id": CHAT}))))
            .unwrap();
        layered += tokens(&index) + tokens(&timeline) + tokens(&record);
        if std::env::var_os("VALOR_BENCH_SHOW").is_some() {
            println!("{index}\n---\n{timeline}\n---\n{record}\n=====");
        }
        found_layered += usize::from(pick == *answer);
        found_index += usize::from(hits.iter().any(|h| h.id == *answer));
        // Pasting: the full records of the same hits.
        let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
        let full = runtime
            .block_on(MemoryBook::get(&memory, CHAT, &ids))
            .unwrap();
        pasted += full
            .iter()
            .map(|r| {
                tokens(&format!(
                    "#{} · {} · {}\n{}\n\n",
                    r.id, r.kind, r.title, r.text
                ))
            })
            .sum::<usize>();
        // What a turn's prompt carries for the question (every memory layer).
        let recalled = runtime.block_on(memory.recall(CHAT, question, &[]));
        let summary = runtime.block_on(memory.last_summary(CHAT));
        let data = ContextData {
            chat_id: CHAT,
            username: None,
            history: &[],
            memories: &recalled,
            learnings: &[],
            session_summary: summary.as_deref(),
            code_map: None,
            budget: PromptBudget::default(),
        };
        injected += inject_counted(question, &data).1.total();
    }
    let n = TOPICS.len();
    println!(
        "memory tools, {n} \"what did we do about X\" questions over {} documents",
        memory.counts().documents()
    );
    println!(
        "  three layers (search → timeline → get)   {:>6} tokens read ({} a question)",
        layered,
        layered / n
    );
    println!(
        "  full records of the same 10 hits          {:>6} tokens read ({} a question)",
        pasted,
        pasted / n
    );
    println!(
        "  fewer tokens with three layers            {:>6.1}×  (target ≥ 5×)",
        pasted as f64 / layered as f64
    );
    println!(
        "  answer among the index's 10 hits          {:>6}/{n}",
        found_index
    );
    println!(
        "  answer is the record the script fetched   {:>6}/{n}",
        found_layered
    );
    println!(
        "  memory layers injected per turn            {:>6} tokens (budget {})",
        injected / n,
        PromptBudget::default().context_tokens
    );

    // Observation extraction: a turn of 14 tool calls (reads, edits, commands, a web search).
    let mut activity = Activity::default();
    for i in 0..6 {
        activity.call(
            &format!("r{i}"),
            "Read",
            &json!({"file_path": format!("/w/chat_7/src/m{i}.rs")}),
        );
        activity.result(&format!("r{i}"), true);
    }
    for i in 0..4 {
        activity.call(&format!("e{i}"), "Edit", &json!({"file_path": "/w/chat_7/src/upload.rs", "old_string": "a", "new_string": format!("let timeout = {i};")}));
        activity.result(&format!("e{i}"), true);
    }
    for (i, command) in ["cargo build", "cargo test", "cargo clippy"]
        .iter()
        .enumerate()
    {
        activity.call(&format!("b{i}"), "Bash", &json!({"command": command}));
        activity.result(&format!("b{i}"), i != 2);
    }
    activity.call(
        "w",
        "WebSearch",
        &json!({"query": "nginx proxy_read_timeout default"}),
    );
    let rounds = 20_000;
    let started = Instant::now();
    let mut made = 0;
    for _ in 0..rounds {
        made += observe(
            CHAT,
            "Fix the upload timeout for big files",
            "Fixed: raised it to 300 s. Tests pass.",
            &activity,
            None,
        )
        .len();
    }
    let per_turn = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    assert_eq!(made, rounds * 2);
    println!(
        "observation extraction, 14 tool calls      {per_turn:>6.1} µs a turn (target ≤ 1 ms)"
    );
}
