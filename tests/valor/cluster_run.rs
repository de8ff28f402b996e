//! Valor on several machines, on one: `valor run` nodes (an ingress, workers) sharing a real
//! PostgreSQL, the fake Bot API with Telegram's limits (409 for a second poller included), the
//! real Claude Code CLI on the fake Anthropic API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Service, fresh_database, sql_strings, valor};
use valor_fakes::anthropic::{FakeAnthropic, Reply, Turn};
use valor_fakes::telegram::FakeTelegram;

/// The user's words of a turn's prompt (the last `USER_REQUEST:` line).
pub(crate) fn request_of(turn: &Turn) -> String {
    let text = turn.last_user_text.clone().unwrap_or_default();
    text.rsplit("USER_REQUEST: ")
        .next()
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// A node: its own folder (store, workspaces, HOME), the shared database.
pub(crate) fn node(
    root: &Path,
    name: &str,
    role: &str,
    database: &str,
    telegram: &FakeTelegram,
    anthropic: &FakeAnthropic,
) -> std::process::Command {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = valor(&dir);
    cmd.arg("run")
        .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
        .env("TELEGRAM_BOT_TOKEN", &telegram.token)
        .env("VALOR__TELEGRAM__API_URL", &telegram.url)
        .env("VALOR__TELEGRAM__ALLOWED_USERS", "[100]")
        .env("VALOR__TELEGRAM__POLL_TIMEOUT_SECS", "1")
        .env("ANTHROPIC_BASE_URL", &anthropic.url)
        .env("ANTHROPIC_API_KEY", "sk-ant-test")
        .env("CLAUDE_CODE_MAX_RETRIES", "1")
        .env("VALOR__STORE__PATH", dir.join("store"))
        .env("VALOR__CLUSTER__ENABLED", "true")
        .env("VALOR__CLUSTER__ROLE", role)
        .env("VALOR__CLUSTER__NODE_ID", name)
        .env("VALOR__CLUSTER__CHAT_LEASE_SECS", "5")
        .env("VALOR__CLUSTER__LEADER_LEASE_SECS", "3")
        .env("VALOR__CLUSTER__CHAT_IDLE_KEEP_SECS", "2")
        .env("VALOR__MEMORY__MODEL_DIR", root.join("no-model"))
        .env("VALOR__LEARNING__ENABLED", "false")
        // The cleanups every 2 s: the cluster's one runs once a slot, on one node.
        .env("VALOR__SCHEDULER__CLEANUP_SCHEDULE", "*/2 * * * * *")
        .env("VALOR_DATABASE_URL", database);
    cmd
}

/// The dashboard's page at `path` on the node whose folder is `dir`, logged in with the link
/// `valor dashboard` prints there.
fn dashboard_page(dir: &Path, path: &str) -> String {
    logged_in_page(
        valor(dir)
            .arg("dashboard")
            .env("VALOR__STORE__PATH", dir.join("store")),
        path,
    )
}

/// The dashboard's page at `path`, logged in with the link `dashboard` (a `valor dashboard`
/// command) prints.
pub(crate) fn logged_in_page(dashboard: &mut std::process::Command, path: &str) -> String {
    let (out, link, stderr) = crate::support::output(dashboard);
    assert!(out.status.success(), "{stderr}");
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let login = client.get(link.trim()).send().unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let base = link.split("/ui/").next().unwrap();
    let page = client
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    page.text().unwrap()
}

/// The texts in `chat` that are a whole answer (`echo … done`), oldest first.
pub(crate) fn answers(telegram: &FakeTelegram, chat: i64) -> Vec<String> {
    (telegram.messages(chat).into_iter())
        .map(|m| m.visible)
        .filter(|t| t.starts_with("echo ") && t.ends_with(" done"))
        .collect()
}

pub(crate) fn wait_until(what: &str, limit: Duration, logs: &[&Service], done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            let logs: Vec<String> = logs.iter().map(|s| s.logs()).collect();
            panic!("{what}\n{}", logs.join("\n-----\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Processes whose working directory is beneath `dir` (a node's Claude processes).
pub(crate) fn processes_in(dir: &Path) -> Vec<u32> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| PathBuf::from(dir));
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(&dir)
            && pid != std::process::id()
        {
            found.push(pid);
        }
    }
    found
}

/// The nodes that ran turns.
pub(crate) fn run_nodes(database: &str) -> Vec<String> {
    sql_strings(
        database,
        "SELECT DISTINCT node FROM runs ORDER BY node",
        None,
    )
}

/// The node holding lease `name` now.
pub(crate) fn lease_holder(database: &str, name: &str) -> Option<String> {
    let holders = sql_strings(
        database,
        "SELECT holder FROM leases WHERE name = $1 AND expires_at > clock_timestamp()",
        Some(name),
    );
    holders
        .first()
        .map(|h| h.split('#').next().unwrap_or("").to_owned())
}

#[test]
fn workers_answer_every_chat_in_order_and_a_killed_workers_chat_moves() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stalled = Arc::new(AtomicUsize::new(0));
    let stalls = Arc::clone(&stalled);
    let (anthropic, telegram) = runtime.block_on(async move {
        (
            FakeAnthropic::start(move |turn| {
                let request = request_of(turn);
                // The first attempt at "slow" streams nothing for a long time.
                // (Only the turn's own streamed request with its tools: not a side request.)
                let main = turn.stream && !turn.tools.is_empty();
                if request.starts_with("slow") && main && stalls.fetch_add(1, Ordering::SeqCst) == 0
                {
                    return Reply::Stall(Duration::from_secs(120));
                }
                Reply::chunks(&["echo ", &request, " done"])
            })
            .await,
            FakeTelegram::start().await,
        )
    });
    let database = fresh_database();
    let root = tempfile::tempdir().unwrap();
    let ingress = Service::start(&mut node(
        root.path(),
        "in",
        "ingress",
        &database,
        &telegram,
        &anthropic,
    ));
    let mut w1 = Service::start(&mut node(
        root.path(),
        "w1",
        "worker",
        &database,
        &telegram,
        &anthropic,
    ));
    let mut w2 = Service::start(&mut node(
        root.path(),
        "w2",
        "worker",
        &database,
        &telegram,
        &anthropic,
    ));

    // Six chats, three messages each, all sent at once.
    let chats: Vec<i64> = (1..=6).map(|n| -1_000 - n).collect();
    for turn in 1..=3 {
        for chat in &chats {
            telegram.user_says(*chat, 100, &format!("m{}-{turn}", -chat));
        }
    }
    wait_until(
        "every chat answered",
        Duration::from_secs(150),
        &[&ingress, &w1, &w2],
        || chats.iter().all(|c| answers(&telegram, *c).len() >= 3),
    );
    for chat in &chats {
        let expected: Vec<String> = (1..=3)
            .map(|t| format!("echo m{}-{t} done", -chat))
            .collect();
        assert_eq!(
            answers(&telegram, *chat),
            expected,
            "chat {chat}: once each, in order"
        );
    }
    // The ingress ran no turn; both workers did.
    assert_eq!(run_nodes(&database), ["w1", "w2"]);
    // `valor stats` on any machine counts every node's turns.
    let (out, stdout, stderr) = crate::support::output(
        valor(root.path())
            .args(["stats", "--json", "--days", "1"])
            .env("VALOR__CLUSTER__ENABLED", "true")
            .env("VALOR_DATABASE_URL", &database),
    );
    assert!(out.status.success(), "{stderr}");
    let stats: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(stats["all"]["turns"], 18, "{stats}");
    // The ingress ran no turn, yet its dashboard shows every chat and its turns.
    let chats_page = dashboard_page(&root.path().join("in"), "/ui/chats");
    for chat in &chats {
        assert!(
            chats_page.contains(&format!("/ui/chats/{chat}\"")),
            "chat {chat}: {chats_page}"
        );
    }
    assert!(
        chats_page.contains("<td class=\"n\" data-label=\"turns\">3</td>"),
        "{chats_page}"
    );
    // The shared store's cleanup is a job of the cluster's: each slot ran once, on one node,
    // and `valor jobs` on any machine says when it last ran.
    let slots = crate::support::sql_strings(
        &database,
        "SELECT COALESCE(body->>'due_ms', '-') FROM job_runs WHERE job = 'shared-cleanup'",
        None,
    );
    assert!(slots.len() >= 2, "{slots:?}");
    let distinct: std::collections::BTreeSet<&String> = slots.iter().collect();
    assert_eq!(distinct.len(), slots.len(), "a slot ran twice: {slots:?}");
    let (out, stdout, stderr) = crate::support::output(
        valor(root.path())
            .args(["jobs", "--json"])
            .env("VALOR__CLUSTER__ENABLED", "true")
            .env("VALOR__SCHEDULER__CLEANUP_SCHEDULE", "*/2 * * * * *")
            .env("VALOR_DATABASE_URL", &database),
    );
    assert!(out.status.success(), "{stderr}");
    let jobs: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let shared = (jobs.as_array().unwrap().iter())
        .find(|job| job["name"] == "shared-cleanup")
        .unwrap_or_else(|| panic!("{stdout}"));
    // (A run may be under way as `valor jobs` reads.)
    assert!(
        shared["last"]["started_ms"].as_u64().is_some()
            && ["ok", "running"].contains(&shared["last"]["outcome"].as_str().unwrap_or("")),
        "this machine never ran it, yet knows its last run: {shared}"
    );
    assert_eq!(telegram.poll_conflicts(), 0, "one poller at a time");

    // A slow turn; the worker running it is killed (-9) while it streams.
    // A private chat: Telegram lets a bot edit it once a second (a group: 20 a minute).
    let slow_chat = 100;
    telegram.user_says(slow_chat, 100, "slow-1");
    wait_until(
        "the slow turn started",
        Duration::from_secs(60),
        &[&w1, &w2],
        || stalled.load(Ordering::SeqCst) >= 1,
    );
    let holder = lease_holder(&database, &format!("chat:{slow_chat}"))
        .expect("a worker holds the slow chat");
    // Any node's dashboard says which node holds it.
    let chats_page = dashboard_page(&root.path().join("in"), "/ui/chats");
    assert!(
        chats_page.contains(&format!("<td data-label=\"node\">{holder}</td>")),
        "{holder}: {chats_page}"
    );
    let killed_at = Instant::now();
    let (victim, victim_dir) = if holder == "w1" {
        (&mut w1, root.path().join("w1"))
    } else {
        (&mut w2, root.path().join("w2"))
    };
    victim.signal("KILL");
    victim.wait_for_exit(Duration::from_secs(5));
    wait_until(
        "the killed worker's chat answered by the other",
        Duration::from_secs(60),
        &[&ingress, &w1, &w2],
        || answers(&telegram, slow_chat) == ["echo slow-1 done"],
    );
    let moved_after = killed_at.elapsed();
    eprintln!("the killed worker's chat was answered again {moved_after:?} after the kill");
    // The lease (5 s; the other worker claims the chat as it runs out) and a cold Claude
    // start (here about 5.1 s in all; the bound leaves room for a loaded machine).
    assert!(moved_after < Duration::from_secs(5 + 10), "{moved_after:?}");

    // The dead worker's earlier chats move to the other one. Without a shared_dir it has no
    // transcript of their Claude sessions: each starts a fresh one with its history
    // re-injected from the store (never a failed --resume first).
    let moved: Vec<i64> = (chats.iter().copied())
        .filter(|chat| {
            let nodes = sql_strings(
                &database,
                "SELECT DISTINCT node FROM runs WHERE chat_id = $1::text::bigint",
                Some(&chat.to_string()),
            );
            nodes == [holder.clone()]
        })
        .collect();
    assert!(
        !moved.is_empty(),
        "both workers ran chats: one of the dead one's moves"
    );
    for chat in &moved {
        telegram.user_says(*chat, 100, &format!("m{}-4", -chat));
    }
    let survivor = if holder == "w1" { &w2 } else { &w1 };
    wait_until(
        "the moved chats answered",
        Duration::from_secs(60),
        &[&ingress, survivor],
        || moved.iter().all(|c| answers(&telegram, *c).len() >= 4),
    );
    for chat in &moved {
        let asked = (anthropic.requests().into_iter())
            .filter_map(|turn| turn.last_user_text)
            .find(|text| text.contains(&format!("m{}-4", -chat)))
            .expect("the moved chat's turn reached the model");
        assert!(
            asked.contains(&format!("m{}-1", -chat)) && asked.contains(&format!("m{}-3", -chat)),
            "chat {chat}'s history re-injected: {asked}"
        );
    }
    assert!(
        !survivor.logs().contains("does not know the chat's session"),
        "{}",
        survivor.logs()
    );

    // The dead node restarts under its name: nothing of its earlier run is left running.
    let mut restarted = Service::start(&mut node(
        root.path(),
        &holder,
        "worker",
        &database,
        &telegram,
        &anthropic,
    ));
    wait_until(
        "no Claude process of the killed run left",
        Duration::from_secs(20),
        &[&restarted],
        || processes_in(&victim_dir.join(".local/share/valor/workspaces")).is_empty(),
    );
    restarted.signal("TERM");
    restarted.wait_for_exit(Duration::from_secs(10));
}

fn echo_anthropic(runtime: &tokio::runtime::Runtime) -> (FakeAnthropic, FakeTelegram) {
    runtime.block_on(async {
        (
            FakeAnthropic::start(|turn| Reply::chunks(&["echo ", &request_of(turn), " done"]))
                .await,
            FakeTelegram::start().await,
        )
    })
}

#[test]
fn another_ingress_takes_over_the_poller_and_no_update_is_lost_or_taken_twice() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = echo_anthropic(&runtime);
    let database = fresh_database();
    let root = tempfile::tempdir().unwrap();
    let mut in1 = Service::start(&mut node(
        root.path(),
        "in1",
        "ingress",
        &database,
        &telegram,
        &anthropic,
    ));
    let mut in2 = Service::start(&mut node(
        root.path(),
        "in2",
        "ingress",
        &database,
        &telegram,
        &anthropic,
    ));
    let worker = Service::start(&mut node(
        root.path(),
        "w",
        "worker",
        &database,
        &telegram,
        &anthropic,
    ));
    let chat = -3_000;
    telegram.user_says(chat, 100, "a-1");
    wait_until(
        "the first answer",
        Duration::from_secs(60),
        &[&in1, &in2, &worker],
        || answers(&telegram, chat).len() == 1,
    );
    assert_eq!(telegram.poll_conflicts(), 0, "followers do not poll");

    // A second poller of the same bot (a stray process): Telegram ends the leader's poll with
    // 409, the leader steps down, and a leader polls again.
    let stray = reqwest::blocking::Client::new()
        .post(format!(
            "{}/bot{}/getUpdates",
            telegram.url.trim_end_matches('/'),
            telegram.token
        ))
        .json(&serde_json::json!({"timeout": 2}))
        .send()
        .unwrap();
    assert!(stray.status().is_success());
    assert!(telegram.poll_conflicts() >= 1);
    telegram.user_says(chat, 100, "a-2");
    wait_until(
        "answered after the conflict",
        Duration::from_secs(60),
        &[&in1, &in2, &worker],
        || answers(&telegram, chat).len() == 2,
    );
    let logs = format!("{}{}", in1.logs(), in2.logs());
    assert!(logs.contains("another poller runs (409)"), "{logs}");

    // The leader is killed; messages keep coming; the other ingress takes over.
    // /health shows this node, the live nodes and who leads what.
    let health = |service: &Service| {
        let (code, _, body) = crate::support::http_get(&service.url("/health"));
        assert_eq!(code, 200, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        health["components"]["cluster"].clone()
    };
    let cluster = health(&in1);
    assert_eq!(cluster["node"], "in1", "{cluster}");
    assert_eq!(cluster["role"], "ingress", "{cluster}");
    assert_eq!(cluster["status"], "ok", "{cluster}");
    let nodes: Vec<&str> = (cluster["nodes"].as_array().unwrap().iter())
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["in1", "in2", "w"], "{cluster}");
    assert!(cluster["leaders"]["poller"].is_string(), "{cluster}");
    let leader = lease_holder(&database, "leader:poller").expect("a poller leads");
    let (dead, alive) = if leader == "in1" {
        (&mut in1, &in2)
    } else {
        (&mut in2, &in1)
    };
    let led_before = alive.logs().matches("leading the poller").count();
    dead.signal("KILL");
    let killed_at = Instant::now();
    dead.wait_for_exit(Duration::from_secs(5));
    for n in 3..=6 {
        telegram.user_says(chat, 100, &format!("a-{n}"));
    }
    wait_until(
        "the other ingress leads",
        Duration::from_secs(30),
        &[alive],
        || alive.logs().matches("leading the poller").count() > led_before,
    );
    let took_over = killed_at.elapsed();
    eprintln!("the other ingress took the poller over {took_over:?} after the kill");
    assert!(took_over < Duration::from_secs(3 + 2), "{took_over:?}");
    wait_until(
        "every message answered",
        Duration::from_secs(90),
        &[alive, &worker],
        || answers(&telegram, chat).len() >= 6,
    );
    let expected: Vec<String> = (1..=6).map(|n| format!("echo a-{n} done")).collect();
    assert_eq!(
        answers(&telegram, chat),
        expected,
        "each update once, in order"
    );
}

#[test]
fn every_ingress_takes_the_webhooks_posts_and_the_leader_registers_it() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = echo_anthropic(&runtime);
    let database = fresh_database();
    let root = tempfile::tempdir().unwrap();
    let secret = "fixed-webhook-secret-of-the-cluster";
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let binds = [free_port(), free_port()];
    let ingress: Vec<Service> = ["in1", "in2"]
        .iter()
        .zip(binds)
        .map(|(name, bind)| {
            let mut cmd = node(
                root.path(),
                name,
                "ingress",
                &database,
                &telegram,
                &anthropic,
            );
            cmd.env(
                "VALOR__TELEGRAM__WEBHOOK_URL",
                "https://valor.example/telegram",
            )
            .env("VALOR__TELEGRAM__WEBHOOK_BIND", bind.to_string())
            .env("TELEGRAM_WEBHOOK_SECRET", secret);
            Service::start(&mut cmd)
        })
        .collect();
    let worker = Service::start(&mut node(
        root.path(),
        "w",
        "worker",
        &database,
        &telegram,
        &anthropic,
    ));
    wait_until(
        "the webhook registered",
        Duration::from_secs(20),
        &[&ingress[0], &ingress[1]],
        || telegram.webhook().is_some(),
    );
    let (_, registered_secret, _) = telegram.webhook().unwrap();
    assert_eq!(registered_secret, secret);

    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let chat = -4_000;
    let post = |bind: std::net::SocketAddr, update_id: i64, text: &str, key: &str| {
        let update = valor_fakes::telegram::text_update(update_id, chat, 100, text);
        client
            .post(format!("http://{bind}/telegram"))
            .header("X-Telegram-Bot-Api-Secret-Token", key)
            .json(&update)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post(binds[0], 1, "h-1", "wrong"), 401);
    assert_eq!(post(binds[0], 1, "h-1", secret), 200);
    // Telegram, unsure, posts it again, to the other node.
    assert_eq!(post(binds[1], 1, "h-1", secret), 200);
    assert_eq!(post(binds[1], 2, "h-2", secret), 200);
    wait_until(
        "both answered",
        Duration::from_secs(90),
        &[&ingress[0], &ingress[1], &worker],
        || answers(&telegram, chat).len() >= 2,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(answers(&telegram, chat), ["echo h-1 done", "echo h-2 done"]);
}

#[test]
fn a_node_whose_database_is_down_says_so_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) = crate::support::output(
        valor(dir.path())
            .arg("run")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            .env("VALOR__CLUSTER__ENABLED", "true")
            .env(
                "VALOR_DATABASE_URL",
                "postgres://valor:never-shown@127.0.0.1:1/valor",
            ),
    );
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot open the cluster's database"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot reach the database"), "{stderr}");
    assert!(!stderr.contains("never-shown"), "{stderr}");
    assert!(!stderr.contains("health server listening"), "{stderr}");
    // Without the URL at all.
    let (out, _, stderr) = crate::support::output(
        valor(dir.path())
            .arg("run")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            .env("VALOR__CLUSTER__ENABLED", "true"),
    );
    assert!(!out.status.success());
    assert!(stderr.contains("VALOR_DATABASE_URL is not set"), "{stderr}");
}

#[test]
fn with_a_shared_dir_a_chat_that_moves_resumes_its_claude_session() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = echo_anthropic(&runtime);
    let database = fresh_database();
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    let start = |name: &str| {
        let mut cmd = node(root.path(), name, "all", &database, &telegram, &anthropic);
        cmd.env("VALOR__CLUSTER__SHARED_DIR", &shared);
        Service::start(&mut cmd)
    };
    let mut first = start("n1");
    let mut second = start("n2");
    let chat = 100;
    telegram.user_says(chat, 100, "alpha-1");
    wait_until(
        "the first turn answered",
        Duration::from_secs(60),
        &[&first, &second],
        || answers(&telegram, chat).len() == 1,
    );
    let ran = run_nodes(&database);
    assert_eq!(ran.len(), 1, "{ran:?}");
    // The node that answered stops (and lets the chat go); the other answers next.
    let (gone, stays) = if ran[0] == "n1" {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    gone.signal("TERM");
    gone.wait_for_exit(Duration::from_secs(20));
    telegram.user_says(chat, 100, "alpha-2");
    wait_until(
        "the second turn answered",
        Duration::from_secs(60),
        &[stays],
        || answers(&telegram, chat).len() == 2,
    );
    assert_eq!(run_nodes(&database).len(), 2, "the other node ran it");
    assert!(
        shared.join("workspaces").is_dir() && shared.join("homes").is_dir(),
        "the chats' folders are on the shared dir"
    );
    // Resumed: the first turn came back from the session's transcript as messages of their
    // own, not re-injected into the prompt.
    let second_turn = (anthropic.requests().into_iter())
        .find(|turn| {
            turn.last_user_text
                .as_deref()
                .is_some_and(|t| t.contains("alpha-2"))
        })
        .expect("the second turn reached the model");
    let messages = second_turn.body["messages"].as_array().unwrap();
    assert!(
        (messages.iter().map(ToString::to_string))
            .any(|m| m.contains("alpha-1") && !m.contains("alpha-2")),
        "the session was resumed: {messages:?}"
    );
    assert!(
        !stays.logs().contains("does not know the chat's session"),
        "{}",
        stays.logs()
    );
}

#[test]
fn a_worker_keeps_no_more_idle_chats_than_warm_processes() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = echo_anthropic(&runtime);
    let database = fresh_database();
    let root = tempfile::tempdir().unwrap();
    let mut cmd = node(root.path(), "n1", "all", &database, &telegram, &anthropic);
    // Idle chats would be kept five minutes; one warm process is kept.
    cmd.env("VALOR__CLUSTER__CHAT_IDLE_KEEP_SECS", "300")
        .env("VALOR__CLAUDE__MAX_WARM", "1");
    let service = Service::start(&mut cmd);
    for chat in [-7_001, -7_002, -7_003] {
        telegram.user_says(chat, 100, &format!("hello {}", -chat));
        wait_until(
            "the chat answered",
            Duration::from_secs(60),
            &[&service],
            || answers(&telegram, chat).len() == 1,
        );
    }
    let held = || {
        sql_strings(
            &database,
            "SELECT name FROM leases WHERE chat_id IS NOT NULL AND expires_at > clock_timestamp()",
            None,
        )
    };
    wait_until(
        "the longest idle chats let go",
        Duration::from_secs(10),
        &[&service],
        || held().len() == 1,
    );
    assert_eq!(held(), ["chat:-7003"], "the latest stays");
}
