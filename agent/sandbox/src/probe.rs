//! What a sandbox allows, seen from inside: the start-up probe runs the init with `--probe` in a
//! sandbox of the same shape as a chat's, and `valor doctor` shows each check.

use serde::{Deserialize, Serialize};

/// What the init saw inside (one JSON line on its stdout).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inside {
    /// `CapEff` from /proc/self/status (hex).
    pub cap_eff: String,
    pub no_new_privs: bool,
    /// Seccomp mode: 2 is a filter.
    pub seccomp: u8,
    pub uid: u32,
    /// A new user namespace was refused.
    pub userns_refused: bool,
    /// A mount was refused.
    pub mount_refused: bool,
    /// A packet socket was refused.
    pub packet_socket_refused: bool,
    /// Network interfaces (only `lo` in a network namespace of its own).
    pub interfaces: Vec<String>,
}

/// One line of the probe's report: what was checked, whether it holds, and what was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Inside {
    /// The checks a sandbox must pass; `sandbox = required` refuses to start when one fails.
    pub fn checks(&self) -> Vec<Check> {
        let check = |name, ok, detail: String| Check { name, ok, detail };
        vec![
            check(
                "user namespace",
                self.uid != 0,
                format!("uid {} inside", self.uid),
            ),
            check(
                "no capabilities",
                u64::from_str_radix(&self.cap_eff, 16).is_ok_and(|caps| caps == 0),
                format!("CapEff {}", self.cap_eff),
            ),
            check(
                "no new user namespaces",
                self.userns_refused,
                "unshare(CLONE_NEWUSER) refused".to_owned(),
            ),
            check(
                "seccomp filter",
                self.seccomp == 2 && self.no_new_privs && self.mount_refused,
                format!(
                    "mode {}, no_new_privs {}, mount refused {}, packet socket refused {}",
                    self.seccomp, self.no_new_privs, self.mount_refused, self.packet_socket_refused
                ),
            ),
            check(
                "network namespace",
                self.interfaces == ["lo"],
                format!("interfaces: {}", self.interfaces.join(", ")),
            ),
        ]
    }
}

/// The report the init prints with `--probe`.
pub(crate) fn inside_report() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let uid = field("Uid:")
        .split_whitespace()
        .nth(1)
        .and_then(|u| u.parse().ok())
        .unwrap_or(0);
    let inside = Inside {
        cap_eff: field("CapEff:"),
        no_new_privs: field("NoNewPrivs:") == "1",
        seccomp: field("Seccomp:").parse().unwrap_or(0),
        uid,
        userns_refused: userns_refused(),
        mount_refused: rustix::mount::mount(
            "none",
            "/tmp",
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .is_err(),
        packet_socket_refused: rustix::net::socket(
            rustix::net::AddressFamily::PACKET,
            rustix::net::SocketType::RAW,
            None,
        )
        .is_err(),
        interfaces: interfaces(),
    };
    serde_json::to_string(&inside).unwrap_or_default()
}

#[allow(unsafe_code)]
fn userns_refused() -> bool {
    // SAFETY: only a user namespace is asked for (no descriptor table is unshared), in the
    // probe's single thread, which exits right after.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) }.is_err()
}

/// Interfaces of this network namespace, from /proc/net/dev.
fn interfaces() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hole_fails_its_check() {
        let good = Inside {
            cap_eff: "0000000000000000".to_owned(),
            no_new_privs: true,
            seccomp: 2,
            uid: 1000,
            userns_refused: true,
            mount_refused: true,
            packet_socket_refused: true,
            interfaces: vec!["lo".to_owned()],
        };
        assert!(good.checks().iter().all(|c| c.ok), "{:?}", good.checks());
        let holes = [
            Inside {
                uid: 0,
                ..good.clone()
            },
            Inside {
                cap_eff: "000001ffffffffff".to_owned(),
                ..good.clone()
            },
            Inside {
                userns_refused: false,
                ..good.clone()
            },
            Inside {
                seccomp: 0,
                ..good.clone()
            },
            Inside {
                interfaces: vec!["lo".to_owned(), "eth0".to_owned()],
                ..good.clone()
            },
        ];
        for (i, hole) in holes.iter().enumerate() {
            let failed: Vec<&str> = hole
                .checks()
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.name)
                .collect();
            assert_eq!(failed.len(), 1, "hole {i}: {failed:?}");
        }
    }
}
