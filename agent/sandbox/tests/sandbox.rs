//! The sandbox from inside, with real bubblewrap: what a hostile program in it can and cannot do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use axum::routing::get;
use tokio::io::AsyncReadExt as _;
use valor_chatfs::{ChatFs, Owner};
use valor_sandbox::{
    Bind, EgressPolicy, Gateway, HostRule, Launch, Launched, Limits, Sandbox, serve,
};

fn sandbox() -> Sandbox {
    Sandbox::new(
        valor_sandbox::locate_bwrap(),
        PathBuf::from(env!("CARGO_BIN_EXE_valor-sandbox-init")),
    )
    .unwrap()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The owner a root Valor gives sandboxes in these tests.
fn owner() -> Option<Owner> {
    is_root().then_some(Owner {
        uid: 4_100_000,
        gid: 4_100_000,
    })
}

struct Tenant {
    _root: tempfile::TempDir,
    fs: ChatFs,
}

fn tenant() -> Tenant {
    let root = tempfile::tempdir().unwrap();
    let fs = ChatFs::new(root.path().join("ws"), root.path().join("homes"), owner());
    Tenant { _root: root, fs }
}

/// A shell script run in chat `chat`'s sandbox (its workspace bound, working directory).
fn shell(t: &Tenant, chat: i64, script: &str, limits: Limits) -> Launch {
    let workspace = t.fs.workspace(chat).unwrap();
    Launch {
        name: "test",
        program: PathBuf::from("/bin/sh"),
        args: vec!["-c".into(), script.into()],
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("HOME".into(), OsString::from(workspace.path())),
        ],
        binds: vec![Bind::dir(&workspace, true).unwrap()],
        data: Vec::new(),
        chdir: Some(workspace.path().to_owned()),
        listen_port: Some(41000),
        keep_fds: Vec::new(),
        run_as: owner(),
        limits,
        own_cgroup: true,
    }
}

/// Runs a launch to its end: (stdout, stderr, exit code).
async fn output(mut launched: Launched) -> (String, String, Option<i32>) {
    drop(launched.child.stdin.take());
    let mut stdout = launched.child.stdout.take().unwrap();
    let mut stderr = launched.child.stderr.take().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    let (a, b) = tokio::join!(
        stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err)
    );
    a.unwrap();
    b.unwrap();
    let status = launched.child.wait().await.unwrap();
    (out, err, status.code())
}

#[tokio::test]
async fn the_probe_finds_every_wall_up() {
    let inside = sandbox().probe(owner()).await.unwrap();
    for check in inside.checks() {
        assert!(check.ok, "{}: {}", check.name, check.detail);
    }
    // The probe leaves nothing in the temp folder.
    let left: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("valor-sandbox-probe"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn inside_there_is_no_privilege_and_no_way_back_out() {
    let t = tenant();
    let script = r#"
        grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
        mount -t tmpfs none /tmp 2>/dev/null && echo MOUNTED || echo mount-refused
        unshare -U true 2>/dev/null && echo UNSHARED || echo unshare-refused
        unshare -n true 2>/dev/null && echo UNSHARED-NET || echo unshare-net-refused
        echo x > /proc/sys/kernel/core_pattern 2>/dev/null && echo WROTE-SYSCTL || echo sysctl-refused
        python3 - <<'PY'
import ctypes, socket, os
libc = ctypes.CDLL(None, use_errno=True)
# open_by_handle_at(AT_FDCWD, handle, O_RDONLY): refused before it looks at the handle.
buf = ctypes.create_string_buffer(64)
r = libc.syscall(304, -100, buf, 0)
print("by-handle-refused" if r == -1 and ctypes.get_errno() == 1 else f"BY-HANDLE {r} {ctypes.get_errno()}")
for family, kind, name in [(17, socket.SOCK_RAW, "packet"), (socket.AF_INET, socket.SOCK_RAW, "raw")]:
    try:
        socket.socket(family, kind, 0)
        print(name.upper() + "-SOCKET")
    except OSError:
        print(name + "-socket-refused")
# x32 system call numbers are another name for every call.
r = libc.syscall(0x40000000 | 165, 0, 0, 0, 0, 0)
print("x32-refused" if r == -1 else "X32-MOUNT")
print("fds", sorted(int(f) for f in os.listdir("/proc/self/fd")))
PY
        ls -l /proc/1/fd 2>&1 | grep -c -- '->' || true
        cat /proc/1/cmdline | tr '\0' ' '; echo
        id -u
    "#;
    let launched = sandbox()
        .launch(shell(&t, 1, script, Limits::default()))
        .await
        .unwrap();
    let (out, err, code) = output(launched).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    for line in [
        "CapEff:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "mount-refused",
        "unshare-refused",
        "unshare-net-refused",
        "sysctl-refused",
        "by-handle-refused",
        "packet-socket-refused",
        "raw-socket-refused",
        "x32-refused",
    ] {
        assert!(out.contains(line), "{line} missing:\n{out}\n{err}");
    }
    // Only stdio and the one python opened for the listing: nothing bubblewrap or Valor held.
    assert!(out.contains("fds [0, 1, 2, 3]"), "{out}");
    let cmdline = out.lines().rev().nth(1).unwrap();
    assert!(
        !cmdline.contains("--bind") && !cmdline.contains("/ws/"),
        "bubblewrap's options are not on its command line: {cmdline}"
    );
    assert_eq!(out.lines().last(), Some("1000"));
}

#[tokio::test]
async fn the_host_loopback_is_unreachable_and_the_gateway_answers() {
    let host_port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = host_port.local_addr().unwrap().port();
    let t = tenant();
    let script = format!(
        r#"
        curl -s -m 2 http://127.0.0.1:{port}/ >/dev/null 2>&1 && echo HOST-REACHED || echo host-unreachable
        curl -s -m 2 http://169.254.169.254/ >/dev/null 2>&1 && echo METADATA || echo metadata-unreachable
        curl -s -m 2 http://127.0.0.1:41000/hello
        echo
        curl -s -m 2 -x http://127.0.0.1:41000 http://127.0.0.1:{port}/ -o /dev/null -w '%{{http_code}}'
        echo
        ls /sys/class/net 2>/dev/null; cat /proc/net/dev | tail -n +3 | cut -d: -f1
        "#
    );
    let launched = sandbox()
        .launch(shell(&t, 2, &script, Limits::default()))
        .await
        .unwrap();
    let mut launched = launched;
    let listener = launched.listener.take().unwrap();
    let _serving = serve(
        listener,
        Gateway {
            egress: std::sync::Arc::new(EgressPolicy {
                chat_id: Some(2),
                rules: vec![HostRule::parse("example.org").unwrap()],
                asker: None,
            }),
            routes: Some(axum::Router::new().route("/hello", get(|| async { "hello from valor" }))),
            tenant: Some(2),
        },
    )
    .unwrap();
    let (out, err, _) = output(launched).await;
    assert!(out.contains("host-unreachable"), "{out}\n{err}");
    assert!(out.contains("metadata-unreachable"), "{out}");
    assert!(out.contains("hello from valor"), "{out}\n{err}");
    assert!(
        out.contains("403"),
        "the proxy refuses an unlisted host: {out}"
    );
    let interfaces: Vec<&str> = out
        .lines()
        .rev()
        .take_while(|l| !l.contains("403"))
        .collect();
    assert_eq!(
        interfaces.iter().map(|l| l.trim()).collect::<Vec<_>>(),
        ["lo"],
        "{out}"
    );
}

#[tokio::test]
async fn a_listed_host_is_reached_through_the_proxy_and_logged_ones_only() {
    let page = axum::Router::new().route("/page", get(|| async { "the allowed page" }));
    let site = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site_port = site.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(site, page).await.unwrap() });
    let t = tenant();
    let script = format!(
        "curl -s -m 5 -x http://127.0.0.1:41000 http://127.0.0.1:{site_port}/page; echo; \
         curl -s -m 5 -x http://127.0.0.1:41000 http://127.0.0.1:{other}/page -w '%{{http_code}}'",
        other = site_port.wrapping_add(1)
    );
    let mut launched = sandbox()
        .launch(shell(&t, 3, &script, Limits::default()))
        .await
        .unwrap();
    let _serving = serve(
        launched.listener.take().unwrap(),
        Gateway {
            egress: std::sync::Arc::new(EgressPolicy {
                chat_id: Some(3),
                rules: vec![HostRule::exact_private("127.0.0.1", site_port)],
                asker: None,
            }),
            routes: None,
            tenant: Some(3),
        },
    )
    .unwrap();
    let (out, err, _) = output(launched).await;
    assert!(out.contains("the allowed page"), "{out}\n{err}");
    assert!(out.trim_end().ends_with("403"), "{out}");
}

#[tokio::test]
async fn what_the_sandbox_writes_is_its_users_and_stays_in_its_workspace() {
    let t = tenant();
    let other = t.fs.workspace(5).unwrap();
    std::fs::write(other.join("secret.txt"), "CHAT-5-SECRET").unwrap();
    let script = format!(
        "echo mine > made.txt; cat {0}/secret.txt 2>&1; ls {1} 2>&1; echo done",
        other.path().display(),
        t.fs.workspaces_dir().display()
    );
    let launched = sandbox()
        .launch(shell(&t, 4, &script, Limits::default()))
        .await
        .unwrap();
    let (out, _, _) = output(launched).await;
    assert!(!out.contains("CHAT-5-SECRET"), "{out}");
    assert!(out.contains("done"));
    let made = t.fs.paths(4).workspace.join("made.txt");
    let meta = std::fs::metadata(&made).unwrap();
    if let Some(owner) = owner() {
        assert_eq!(
            meta.uid(),
            owner.uid,
            "as root the sandbox runs as its own user"
        );
    } else {
        assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
    }
}

#[tokio::test]
async fn limits_hold_memory_processes_and_file_size() {
    let sandbox = sandbox();
    if !sandbox.cgroups().limits_memory() {
        eprintln!("skipped: no cgroup here ({})", sandbox.cgroups().describe());
        return;
    }
    let t = tenant();
    let limits = Limits {
        memory_mb: 256,
        processes: 64,
        disk_mb: 16,
        ..Limits::default()
    };
    // The fork loop last: a shell that cannot fork gives up, and its sleeps hold the limit.
    let script = r#"
        dd if=/dev/zero of=big bs=1M count=64 2>&1 | tail -1
        ls -l big | awk '{print "size", $5}'
        python3 -c 'b = bytearray(1024 * 1024 * 1024); print("ALLOCATED")' 2>&1 | tail -1
        (i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null
    "#;
    let mut launched = sandbox.launch(shell(&t, 6, script, limits)).await.unwrap();
    // Kept past the run: its counters are read after it.
    let cgroup = launched.cgroup.take().unwrap();
    let (out, err, _) = output(launched).await;
    assert!(
        !out.contains("ALLOCATED"),
        "1 GB went past a 256 MB limit: {out}\n{err}"
    );
    let size: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("size "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        size <= 16 * 1024 * 1024,
        "file of {size} bytes: {out}\n{err}"
    );
    let events = cgroup.events();
    assert!(events.oom_kills >= 1, "{events:?}");
    assert!(events.process_refusals >= 1, "{events:?}\n{out}\n{err}");
}

#[tokio::test]
async fn a_turns_leftovers_are_found_and_ended() {
    let t = tenant();
    let script = "sleep 300 & sleep 301 & echo started; read line; echo $line";
    let sandbox = sandbox();
    let mut launched = sandbox
        .launch(shell(&t, 7, script, Limits::default()))
        .await
        .unwrap();
    let mut stdout = launched.child.stdout.take().unwrap();
    let mut first = [0u8; 8];
    stdout.read_exact(&mut first).await.unwrap();
    let members = valor_sandbox::procs::members(launched.leader, launched.cgroup.as_ref());
    assert_eq!(
        members.len(),
        3,
        "the shell and its two sleeps: {members:?}"
    );
    let shell_pid = members
        .iter()
        .find(|(pid, _)| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sh")
        })
        .copied()
        .unwrap();
    let keep: HashSet<_> = [shell_pid].into_iter().collect();
    let killed =
        valor_sandbox::procs::kill_newcomers(launched.leader, launched.cgroup.as_ref(), &keep);
    assert_eq!(killed, 2);
    let left = valor_sandbox::procs::members(launched.leader, launched.cgroup.as_ref());
    assert_eq!(left, [shell_pid], "{left:?}");
    drop(launched);
}
