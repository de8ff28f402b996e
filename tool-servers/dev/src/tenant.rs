//! The browser as a tenant: Chromium in a sandbox of its own (valor-sandbox: no capabilities,
//! its own user when Valor is root, its own network namespace, no file of anyone's), driven
//! over `--remote-debugging-pipe` (no DevTools port), reaching only the app under development
//! through Valor's egress proxy, with `file://` and every other URL refused by policy and
//! downloads off.
//!
//! chromiumoxide speaks to a browser over a WebSocket; here that socket is Valor's own: a
//! loopback listener with a random path that takes exactly one connection (chromiumoxide's) and
//! closes at once, its frames carried to and from the pipe. Nothing a sandbox could reach ever
//! listens: each sandbox has a network namespace of its own.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use valor_chatfs::Owner;
use valor_sandbox::{
    Bind, DataFile, EgressPolicy, Gateway, HostRule, Launch, Limits, Sandbox, Serving,
};
use valor_tools::ToolError;

/// The port the browser's proxy answers on inside its sandbox.
const PROXY_PORT: u16 = 41000;
/// Chromium reads commands from this descriptor and writes answers to the next.
const COMMANDS_FD: i32 = 3;
const ANSWERS_FD: i32 = 4;
/// One DevTools message at most (a full-page screenshot is a large one).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Where the browser runs.
#[derive(Clone)]
pub struct BrowserSandbox {
    pub sandbox: Arc<Sandbox>,
    /// The host user it runs as when Valor is root (not a chat's).
    pub run_as: Option<Owner>,
}

impl std::fmt::Debug for BrowserSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserSandbox")
            .field("run_as", &self.run_as)
            .finish()
    }
}

/// A running sandboxed browser: ended (its whole sandbox) when dropped.
pub struct Tenant {
    pub leader: u32,
    _child: tokio::process::Child,
    _cgroup: Option<valor_sandbox::Cgroup>,
    _proxy: Serving,
    bridge: tokio::task::JoinHandle<()>,
}

impl Drop for Tenant {
    fn drop(&mut self) {
        self.bridge.abort();
    }
}

/// Starts Chromium in its sandbox; returns the WebSocket address chromiumoxide connects to
/// (good for one connection) and the tenant.
pub async fn start(
    sandbox: &BrowserSandbox,
    executable: &Path,
    app_url: &str,
    viewport: (u32, u32),
) -> Result<(String, Tenant), ToolError> {
    let io = |what: &str, e: std::io::Error| ToolError::Io(format!("{what}: {e}"));
    let (commands_in, commands_out) =
        pipe().map_err(|e| io("cannot make the browser's pipe", e))?;
    let (answers_in, answers_out) = pipe().map_err(|e| io("cannot make the browser's pipe", e))?;
    let mut binds = Vec::new();
    for folder in ["/etc/chromium.d", "/usr/share/fonts"] {
        let path = Path::new(folder);
        if path.is_dir() && !path.starts_with("/usr") {
            binds.push(Bind::path(path, path, false).map_err(unreachable)?);
        }
    }
    let (width, height) = viewport;
    let args: Vec<String> = vec![
        "--headless=new".into(),
        "--remote-debugging-pipe".into(),
        // Chromium's own sandbox needs namespaces this one refuses; this one stands instead.
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--hide-scrollbars".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-extensions".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        "--user-data-dir=/tmp/profile".into(),
        format!("--window-size={width},{height}"),
        format!("--proxy-server=http://127.0.0.1:{PROXY_PORT}"),
        // Loopback too goes through the proxy: the app is on the host, not in here.
        "--proxy-bypass-list=<-loopback>".into(),
        "about:blank".into(),
    ];
    let launch = Launch {
        name: "chromium",
        program: executable.to_owned(),
        args: args.into_iter().map(Into::into).collect(),
        env: [
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/tmp"),
            ("XDG_CONFIG_HOME", "/tmp/.config"),
            ("XDG_CACHE_HOME", "/tmp/.cache"),
            ("DBUS_SESSION_BUS_ADDRESS", "disabled:"),
            ("LANG", "C.UTF-8"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect(),
        binds,
        data: vec![DataFile {
            target: PathBuf::from("/etc/chromium/policies/managed/valor.json"),
            bytes: policy(app_url),
        }],
        chdir: Some(PathBuf::from("/tmp")),
        listen_port: Some(PROXY_PORT),
        keep_fds: vec![(commands_in, COMMANDS_FD), (answers_out, ANSWERS_FD)],
        run_as: sandbox.run_as,
        limits: Limits {
            memory_mb: 2048,
            processes: 1024,
            cpu_weight: 100,
            disk_mb: 512,
            tmp_mb: 512,
        },
        own_cgroup: true,
    };
    let mut launched = sandbox.sandbox.launch(launch).await.map_err(unreachable)?;
    let listener = launched
        .listener
        .take()
        .ok_or_else(|| unreachable("the browser's sandbox handed over no socket"))?;
    let proxy = valor_sandbox::serve(
        listener,
        Gateway {
            egress: Arc::new(EgressPolicy {
                chat_id: None,
                rules: app_rule(app_url).into_iter().collect(),
                asker: None,
            }),
            routes: None,
            tenant: None,
        },
    )
    .map_err(|e| io("cannot serve the browser's proxy", e))?;
    let (url, bridge) = bridge(commands_out, answers_in)
        .await
        .map_err(|e| io("cannot bridge the browser's pipe", e))?;
    Ok((
        url,
        Tenant {
            leader: launched.leader,
            _child: launched.child,
            _cgroup: launched.cgroup,
            _proxy: proxy,
            bridge,
        },
    ))
}

/// Chromium's managed policy: the app's origin and `about:blank`, nothing else (no `file://`,
/// no `chrome://`), no downloads, no file pickers.
fn policy(app_url: &str) -> Vec<u8> {
    let mut allowed = vec!["about:blank".to_owned()];
    if let Some(origin) = origin(app_url) {
        allowed.push(origin);
    }
    serde_json::json!({
        "URLBlocklist": ["*"],
        "URLAllowlist": allowed,
        "DownloadRestrictions": 3,
        "AllowFileSelectionDialogs": false,
        "PromptForDownloadLocation": false,
    })
    .to_string()
    .into_bytes()
}

/// `scheme://host:port` of the app's URL.
fn origin(app_url: &str) -> Option<String> {
    let url = url::Url::parse(app_url.trim()).ok()?;
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!("{}://{host}:{port}", url.scheme()))
}

/// The egress rule for the app: exactly its host and port, a loopback address allowed (the app
/// under development runs on this machine).
fn app_rule(app_url: &str) -> Option<HostRule> {
    let url = url::Url::parse(app_url.trim()).ok()?;
    Some(HostRule::exact_private(
        url.host_str()?,
        url.port_or_known_default()?,
    ))
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(std::io::Error::from)
}

/// The WebSocket end of the pipe: one connection, on a path nobody can guess, then the
/// listener is gone.
async fn bridge(
    commands: OwnedFd,
    answers: OwnedFd,
) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let path = format!("/devtools/browser/{}", uuid::Uuid::new_v4().simple());
    let url = format!("ws://{}{path}", listener.local_addr()?);
    let commands = tokio::fs::File::from_std(std::fs::File::from(commands));
    let answers = tokio::fs::File::from_std(std::fs::File::from(answers));
    let task = tokio::spawn(async move {
        // The error type is the handshake library's; its size is not ours to choose.
        #[allow(clippy::result_large_err)]
        let check = move |request: &Request, response: Response| {
            if request.uri().path() == path {
                Ok(response)
            } else {
                let mut refusal = ErrorResponse::new(None);
                *refusal.status_mut() = async_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
                Err(refusal)
            }
        };
        let Ok(Ok((stream, _))) =
            tokio::time::timeout(Duration::from_secs(30), listener.accept()).await
        else {
            return;
        };
        // One connection only: nothing else may ever reach the browser.
        drop(listener);
        let socket = match async_tungstenite::tokio::accept_hdr_async(stream, check).await {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!(error = %e, "the DevTools bridge refused a connection");
                return;
            }
        };
        pump(socket, commands, answers).await;
    });
    Ok((url, task))
}

/// Frames to the pipe (each ended by a NUL), NUL-ended messages from the pipe to frames.
async fn pump<S>(
    socket: async_tungstenite::WebSocketStream<S>,
    mut commands: tokio::fs::File,
    mut answers: tokio::fs::File,
) where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    let (mut to_client, mut from_client) = socket.split();
    let upstream = async move {
        while let Some(Ok(message)) = from_client.next().await {
            let bytes = match message {
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Binary(bytes) => bytes.to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if commands.write_all(&bytes).await.is_err() || commands.write_all(&[0]).await.is_err()
            {
                break;
            }
        }
    };
    let downstream = async move {
        let mut pending: Vec<u8> = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n) = answers.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buffer[..n]);
            while let Some(end) = pending.iter().position(|b| *b == 0) {
                let message: Vec<u8> = pending.drain(..=end).take(end).collect();
                let text = String::from_utf8_lossy(&message).into_owned();
                if to_client.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
            if pending.len() > MAX_MESSAGE {
                tracing::warn!("the browser sent an over-long DevTools message");
                return;
            }
        }
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

fn unreachable(e: impl std::fmt::Display) -> ToolError {
    ToolError::Unreachable {
        service: "Chromium",
        reason: format!("cannot start the browser's sandbox: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_the_app_only() {
        let policy: serde_json::Value =
            serde_json::from_slice(&policy("http://127.0.0.1:3000/shop?x=1")).unwrap();
        assert_eq!(policy["URLBlocklist"], serde_json::json!(["*"]));
        assert_eq!(
            policy["URLAllowlist"],
            serde_json::json!(["about:blank", "http://127.0.0.1:3000"])
        );
        assert_eq!(policy["DownloadRestrictions"], 3);
        assert_eq!(
            app_rule("https://app.example/x"),
            Some(HostRule::exact_private("app.example", 443))
        );
        assert_eq!(app_rule(""), None);
    }
}
