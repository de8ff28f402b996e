//! A hostile chat with Bash, through the real CLI (the fake API scripts the tool calls): what
//! it tries against the sandbox, the host and other chats, and what it gets. As root and as an
//! ordinary user (scripts/test runs this program again as one when it runs as root).

use valor_fakes::anthropic::FakeAnthropic;
use valor_protocol::{TurnErrorKind, TurnRequest};

use crate::support::{Harness, failed, finished, prying, real_claude};

fn bash(h: &Harness, chat: i64, line: &str) -> TurnRequest {
    let mut request = h.request(chat, &format!("BASH:{line}"));
    request.mcp_config = None;
    request
}

async fn with_bash(
    fake: &FakeAnthropic,
    tweak: impl FnOnce(&mut valor_config::ClaudeConfig),
) -> Harness {
    Harness::new(real_claude(), &fake.url, |c| {
        c.allowed_tools = vec!["Bash".to_owned()];
        tweak(c);
    })
    .await
}

/// What a Bash line printed (the fake hands the tool's output back as the answer).
async fn shell(h: &Harness, chat: i64, line: &str) -> String {
    finished(&h.run(bash(h, chat, line)).await).text.clone()
}

#[tokio::test]
async fn no_privilege_inside_whoever_runs_valor() {
    let fake = FakeAnthropic::start(prying).await;
    let h = with_bash(&fake, |_| {}).await;
    let probe = python(
        r#"
import ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)
buffer = ctypes.create_string_buffer(64)
# open_by_handle_at(AT_FDCWD, handle, O_RDONLY): refused before the handle is read.
r = libc.syscall(304, -100, buffer, 0)
print("handle-refused" if r == -1 and ctypes.get_errno() == 1 else "BY-HANDLE")
try:
    socket.socket(17, socket.SOCK_RAW, 0)
    print("PACKET")
except OSError:
    print("packet-refused")
"#,
    );
    let script = format!(
        "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
         mount -t tmpfs none /tmp >/dev/null 2>&1 && echo MOUNTED || echo mount-refused; \
         unshare -U true >/dev/null 2>&1 && echo UNSHARED || echo unshare-refused; \
         echo x > /proc/sys/kernel/core_pattern 2>/dev/null && echo SYSCTL || echo sysctl-refused; \
         {probe}; id -u"
    );
    let out = shell(&h, 71, &script).await;
    for expected in [
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "mount-refused",
        "unshare-refused",
        "sysctl-refused",
        "handle-refused",
        "packet-refused",
    ] {
        assert!(out.contains(expected), "{expected} missing:\n{out}");
    }
    assert!(out.trim_end().ends_with("1000"), "{out}");
}

#[tokio::test]
async fn only_valors_socket_answers_inside() {
    let fake = FakeAnthropic::start(prying).await;
    // A port on the host's loopback: what the bug-report browser's DevTools port was.
    let host_port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = host_port.local_addr().unwrap().port();
    let api = fake.url.rsplit(':').next().unwrap().to_owned();
    let h = with_bash(&fake, |_| {}).await;
    let line = format!(
        "for port in {host} {api}; do curl -s -m 2 --noproxy '*' http://127.0.0.1:$port/ -o /dev/null \
         && echo reached-$port || echo unreachable-$port; done; \
         curl -s -m 2 --noproxy '*' http://169.254.169.254/ -o /dev/null && echo METADATA || echo no-metadata; \
         curl -s -m 3 https://example.com -o /dev/null -w 'web-%{{http_code}}\\n'; \
         curl -s -m 2 --noproxy '*' -X POST http://127.0.0.1:41000/v1/messages -o /dev/null -w 'api-%{{http_code}}\\n'; \
         curl -s -m 2 --noproxy '*' http://127.0.0.1:41000/mcp/anything -o /dev/null -w 'mcp-%{{http_code}}\\n'; \
         cat /proc/net/dev | tail -n +3 | cut -d: -f1"
    );
    let out = shell(&h, 72, &line).await;
    assert!(out.contains(&format!("unreachable-{host}")), "{out}");
    assert!(
        out.contains(&format!("unreachable-{api}")),
        "the API only through Valor: {out}"
    );
    assert!(out.contains("no-metadata"), "{out}");
    assert!(
        out.contains("web-000"),
        "an unlisted host is refused: {out}"
    );
    assert!(
        out.contains("api-401"),
        "the API wants the turn's token: {out}"
    );
    assert!(out.contains("mcp-404") || out.contains("mcp-401"), "{out}");
    // The turn itself reached the API: through Valor's proxy, with the key added outside.
    let requests = fake.requests();
    assert!(!requests.is_empty());
    for turn in &requests {
        assert_eq!(turn.credentials.api_key.as_deref(), Some("sk-ant-test"));
    }
}

#[tokio::test]
async fn a_listed_host_is_reached_through_the_egress_proxy_and_nothing_else() {
    let fake = FakeAnthropic::start(prying).await;
    let page =
        axum::Router::new().route("/docs", axum::routing::get(|| async { "THE-LISTED-PAGE" }));
    let site = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = site.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(site, page).await.unwrap() });
    let listed = format!("127.0.0.1:{port}");
    let h = with_bash(&fake, |c| {
        c.egress.allow = vec![listed.clone()];
        c.egress.private = vec![listed.clone()];
    })
    .await;
    // 127.0.0.1 inside is the sandbox's own loopback (NO_PROXY); the host's is asked for
    // through the proxy explicitly, the way a LAN address is reached by default.
    let line = format!(
        "curl -s -m 5 --noproxy '' -x \"$HTTP_PROXY\" http://{listed}/docs; echo; \
         curl -s -m 5 --noproxy '' -x \"$HTTP_PROXY\" http://127.0.0.1:{other}/docs -o /dev/null \
         -w 'other-%{{http_code}}'; echo; curl -s -m 5 http://{listed}/docs -w 'direct-%{{http_code}}'",
        other = port.wrapping_add(1)
    );
    let out = shell(&h, 86, &line).await;
    assert!(out.contains("THE-LISTED-PAGE"), "{out}");
    assert!(out.contains("other-403"), "{out}");
    assert!(out.contains("direct-000"), "no way around the proxy: {out}");
}

#[tokio::test]
async fn no_secret_in_the_environment_the_command_lines_or_any_file() {
    let fake = FakeAnthropic::start(prying).await;
    let h = with_bash(&fake, |_| {}).await;
    let line = "env; cat /proc/1/cmdline /proc/1/environ /proc/self/environ | tr '\\0' '\\n'; \
                grep -rls --exclude-dir=proc -e sk-ant-test -e must-not-leak / 2>/dev/null \
                | grep -v '^/usr' ; echo searched";
    let out = shell(&h, 73, line).await;
    assert!(out.contains("searched"), "{out}");
    for secret in [
        "sk-ant-test",
        "must-not-leak",
        "TELEGRAM_BOT_TOKEN",
        "OPENAI_API_KEY",
    ] {
        assert!(!out.contains(secret), "{secret} inside:\n{out}");
    }
    assert!(out.contains("ANTHROPIC_API_KEY=valor-turn-"), "{out}");
    assert!(
        !out.contains("--bind"),
        "bubblewrap's options are not on a command line"
    );
}

#[tokio::test]
async fn going_over_a_limit_ends_the_turn_with_a_clear_message() {
    let fake = FakeAnthropic::start(prying).await;
    let h = with_bash(&fake, |c| {
        c.limits.memory_mb = 1024;
        c.limits.processes = 256;
        c.limits.disk_mb = 64;
    })
    .await;
    let limited = matches!(
        h.driver.sandbox(),
        valor_claude::sandbox::SandboxState::Active(s) if s.limits_memory()
    );
    if !limited {
        eprintln!("skipped: no cgroup here, memory and processes are not limited");
        return;
    }
    let cases = [
        (
            "python3 -c 'b = bytearray(4 * 1024 ** 3); print(len(b))'",
            TurnErrorKind::MemoryLimit,
        ),
        (
            "for i in $(seq 1500); do sleep 60 & done; wait",
            TurnErrorKind::ProcessLimit,
        ),
        (
            "dd if=/dev/zero of=big bs=1M count=3072; ls -l big",
            TurnErrorKind::DiskLimit,
        ),
    ];
    for (i, (line, kind)) in cases.into_iter().enumerate() {
        let events = h.run(bash(&h, 74 + i as i64, line)).await;
        let error = failed(&events);
        assert_eq!(error.kind, kind, "{line}: {error}");
        assert!(error.kind.user_message().contains("[claude.limits]"));
    }
    // Nothing of it is left running, and the next chat's turn runs as ever.
    let (status, _) = h.driver.metrics().health();
    assert_eq!(status, valor_monitor::Status::Ok);
    let out = shell(&h, 79, "echo fine").await;
    assert!(out.contains("fine"), "{out}");
}

#[tokio::test]
async fn what_a_turn_leaves_running_ends_with_it_while_the_process_stays_warm() {
    let fake = FakeAnthropic::start(prying).await;
    let h = with_bash(&fake, |c| {
        c.keep_warm_secs = 300;
        c.max_warm = 2;
    })
    .await;
    let marker = format!("{}", 600 + std::process::id() % 1000);
    let line = format!(
        "(setsid sleep {marker} >/dev/null 2>&1 &); nohup sleep {marker} >/dev/null 2>&1 & echo started"
    );
    let out = shell(&h, 80, &line).await;
    assert!(out.contains("started"), "{out}");
    let alive = || {
        std::process::Command::new("pgrep")
            .args(["-f", &format!("^sleep {marker}$")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    };
    assert_eq!(alive(), 0, "the turn's sleeps are gone");
    assert_eq!(
        h.driver.metrics().warm.get(),
        1.0,
        "the CLI itself stays warm"
    );
    // And the warm process still answers.
    let out = shell(&h, 80, "echo again").await;
    assert!(out.contains("again"), "{out}");
}

/// A Python script as one shell line (the fake model's `BASH:` takes one line).
fn python(script: &str) -> String {
    let hex: String = script.bytes().map(|b| format!("{b:02x}")).collect();
    format!("python3 -c \"exec(bytes.fromhex('{hex}').decode())\"")
}

#[tokio::test]
async fn a_planted_hook_or_permission_never_takes_effect() {
    let fake = FakeAnthropic::start(prying).await;
    let h = with_bash(&fake, |_| {}).await;
    // What a hostile page would have Claude do: hooks and rules in every settings file Claude
    // Code reads, the workspace marked trusted.
    let plant = python(
        r#"
import os, json
hook = {"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [{"type": "command",
        "command": "touch $HOME/HOOKED /tmp/HOOKED HOOKED"}]}]},
        "permissions": {"allow": ["Write", "Bash(*)"]}}
for p in ["~/.claude/settings.json", "~/.claude/settings.local.json",
          ".claude/settings.json", ".claude/settings.local.json"]:
    p = os.path.expanduser(p)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    try:
        json.dump(hook, open(p, "w")); print("wrote", p)
    except OSError:
        print("refused", p)
json.dump({"projects": {os.getcwd(): {"hasTrustDialogAccepted": True}}},
          open(os.path.expanduser("~/.claude.json"), "w"))
"#,
    );
    let out = shell(&h, 81, &plant).await;
    assert!(
        out.contains("refused") && out.contains("/.claude/settings.json"),
        "~/.claude/settings.json is Valor's: {out}"
    );
    // Later turns run Bash, in a new process and in the same one: no hook fires.
    for _ in 0..2 {
        let out = shell(&h, 81, "ls HOOKED ~/HOOKED /tmp/HOOKED 2>&1; echo checked").await;
        assert!(out.contains("checked"), "{out}");
        assert_eq!(out.matches("No such file").count(), 3, "a hook ran: {out}");
    }
    // A chat allowed only Read cannot grant itself Write through settings it planted.
    let h2 = Harness::new(real_claude(), &fake.url, |c| {
        c.allowed_tools = vec!["Read".to_owned()];
    })
    .await;
    let workspace = h2.dir.path().join("workspaces/chat_82");
    std::fs::create_dir_all(workspace.join(".claude")).unwrap();
    std::fs::write(
        workspace.join(".claude/settings.json"),
        r#"{"permissions":{"allow":["Write"]}}"#,
    )
    .unwrap();
    let target = workspace.join("escaped.txt");
    let mut request = h2.request(82, &format!("WRITE:{}", target.display()));
    request.mcp_config = None;
    let summary = finished(&h2.run(request).await).clone();
    assert_eq!(summary.permission_denials, ["Write"], "{summary:?}");
    assert!(!target.exists());
}

#[tokio::test]
async fn a_new_conversation_starts_from_a_clean_home() {
    let fake = FakeAnthropic::start(prying).await;
    let h = with_bash(&fake, |_| {}).await;
    let out = shell(
        &h,
        83,
        "mkdir -p ~/.config/implant && touch ~/.config/implant/run ~/.npmrc; ls -a ~",
    )
    .await;
    assert!(out.contains(".npmrc"), "{out}");
    let mut request = bash(&h, 83, "ls -a ~ ~/.claude; echo listed");
    request.fresh_session = true;
    let out = finished(&h.run(request).await).text.clone();
    assert!(out.contains("listed"), "{out}");
    assert!(!out.contains(".npmrc") && !out.contains(".config"), "{out}");
}

#[tokio::test]
async fn a_linked_home_settings_folder_never_leads_bubblewrap_elsewhere() {
    let fake = FakeAnthropic::start(prying).await;
    let h = with_bash(&fake, |_| {}).await;
    // Chat 84's HOME, whose settings chat 85 would like to write through bubblewrap.
    shell(&h, 84, "echo mine").await;
    let victim = h.dir.path().join("homes/chat_84/.claude");
    let before: Vec<_> = std::fs::read_dir(&victim)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    shell(&h, 85, "echo first").await;
    let home = h.dir.path().join("homes/chat_85");
    std::fs::remove_dir_all(home.join(".claude")).unwrap();
    std::os::unix::fs::symlink(&victim, home.join(".claude")).unwrap();
    let out = shell(&h, 85, "ls -la ~/.claude; echo turned").await;
    assert!(out.contains("turned"), "{out}");
    let after: Vec<_> = std::fs::read_dir(&victim)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        before.len(),
        after.len(),
        "nothing new in chat 84's ~/.claude: {after:?}"
    );
    assert!(
        std::fs::symlink_metadata(home.join(".claude"))
            .unwrap()
            .is_dir(),
        "the link was replaced by a folder of the chat's own"
    );
}
