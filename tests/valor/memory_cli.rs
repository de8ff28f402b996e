//! `valor memory` end to end with the real model: import, hybrid search, show, export (an exact
//! round trip), reindex, bad input, a missing model, and the same commands going through the
//! running agent's API while `valor run` owns the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::support::{Service, http_get, output, valor};

const EXPORT: &str = concat!(
    r#"{"type":"message","chat_id":5,"seq":3,"role":"user","text":"The billing service times out after thirty seconds.","at_ms":1795330000000,"user_id":9,"username":"ann","source":"tg:1"}"#,
    "\n",
    r#"{"type":"message","chat_id":5,"seq":4,"role":"assistant","text":"I will look at the payment webhook logs.","at_ms":1795330001000,"user_id":null,"username":null,"source":null}"#,
    "\n",
    r#"{"type":"memory","id":7,"kind":"link","chat_id":5,"at_ms":1795330002000,"title":"Sourdough starter guide","text":"How to feed a sourdough starter and bake bread at home.","url":"https://example.org/bread"}"#,
    "\n",
    r#"{"type":"memory","id":8,"kind":"insight","chat_id":null,"at_ms":1795330003000,"title":"Timeouts cluster on Mondays","text":"Most billing timeouts happen on Monday mornings."}"#,
    "\n",
);

fn import(dir: &std::path::Path) {
    let file = dir.join("memory.jsonl");
    std::fs::write(&file, EXPORT).unwrap();
    let (out, stdout, stderr) = output(valor(dir).args(["memory", "import"]).arg(&file));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "imported 2 messages, 2 saved memories and 0 learnings\n"
    );
}

#[test]
fn import_search_show_export_and_reindex_work_on_the_store_directly() {
    let dir = tempfile::tempdir().unwrap();
    import(dir.path());

    // "bread" is not in the query: only the meaning finds the link.
    let (out, stdout, stderr) =
        output(valor(dir.path()).args(["memory", "search", "baking a loaf at home", "--json"]));
    assert!(out.status.success(), "{stderr}");
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["mode"], "hybrid", "{result}");
    assert_eq!(result["hits"][0]["id"], 7, "{result}");

    let (out, stdout, _) = output(valor(dir.path()).args([
        "memory",
        "search",
        "billing timeouts",
        "--kind",
        "insight",
    ]));
    assert!(out.status.success());
    assert!(
        stdout.starts_with("#8        insight  2026-11-22  shared"),
        "{stdout}"
    );
    assert!(!stdout.contains("#3 "), "{stdout}");

    let (out, stdout, _) = output(valor(dir.path()).args(["memory", "show", "7"]));
    assert!(out.status.success());
    assert!(stdout.contains("https://example.org/bread"), "{stdout}");
    assert!(
        stdout.contains("How to feed a sourdough starter"),
        "{stdout}"
    );

    let (out, stdout, _) = output(valor(dir.path()).args(["memory", "export"]));
    assert!(out.status.success());
    assert_eq!(stdout, EXPORT, "export after import is exact");

    let (out, stdout, stderr) = output(valor(dir.path()).args(["memory", "reindex"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "reindexed 4 of 4 documents\n");

    let (out, stdout, _) = output(valor(dir.path()).args(["memory", "stats"]));
    assert!(out.status.success());
    assert!(stdout.starts_with("state      ready\n"), "{stdout}");
    assert!(
        stdout.contains("vectors    4 (0 queued for embedding, 4 in the index)"),
        "{stdout}"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_a_missing_model_falls_back_to_keywords() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.jsonl");
    std::fs::write(
        &file,
        [EXPORT.as_bytes(), b"{\"type\":\"memory\"\n"].concat(),
    )
    .unwrap();
    let (out, _, stderr) = output(valor(dir.path()).args(["memory", "import"]).arg(&file));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("nothing was imported; 1 bad line(s), the first: line 5"),
        "{stderr}"
    );

    let (out, _, stderr) =
        output(valor(dir.path()).args(["memory", "search", "x", "--kind", "memo"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("unknown kind \"memo\""), "{stderr}");

    import(dir.path());
    let (out, stdout, stderr) = output(
        valor(dir.path())
            .env("VALOR__MEMORY__MODEL_DIR", dir.path().join("no-model"))
            .args(["memory", "search", "billing timeouts"]),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("#8 "), "{stdout}");
    assert!(stdout.contains("(keyword search only"), "{stdout}");
}

#[test]
fn while_the_agent_runs_memory_commands_go_through_its_api() {
    let dir = tempfile::tempdir().unwrap();
    import(dir.path());
    let service = Service::start(
        valor(dir.path())
            .arg("run")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0"),
    );
    // The worker embeds what the import queued; /health shows it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, body) = http_get(&service.url("/health"));
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        let recall = &health["components"]["memory_index"];
        if recall["state"] == "ready" && recall["vectors"] == 4 {
            assert_eq!(recall["search"], "hybrid");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{health}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (out, stdout, stderr) =
        output(valor(dir.path()).args(["memory", "search", "baking a loaf at home", "--json"]));
    assert!(out.status.success(), "{stderr}");
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["hits"][0]["id"], 7, "{result}");

    let (out, stdout, _) = output(valor(dir.path()).args(["memory", "export"]));
    assert!(out.status.success());
    assert_eq!(stdout, EXPORT);

    // Without the token the API refuses.
    let (code, _, body) = http_get(&service.url("/memory/stats"));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("api-token"), "{body}");
}
