//! Pairing: `valor pair` prints a one-time code (valid 10 minutes, at most 3 pending); a user who
//! sends `/pair CODE` to the bot joins the allow-list for good. `valor pair` runs beside
//! `valor run`, which owns the store, so pending codes live in a small file next to the store,
//! readable only by Valor's user and replaced atomically.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use valor_protocol::access::Role;
use valor_protocol::time::now_ms;

pub const CODE_VALID: Duration = Duration::from_secs(600);
pub const MAX_PENDING: usize = 3;
/// No 0/O or 1/I: codes are read off a screen and typed.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    #[error(
        "{MAX_PENDING} pairing codes are already waiting to be used; use one or wait until one expires (codes last 10 minutes)"
    )]
    TooManyPending,
    #[error("cannot read or write the pairing codes at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    code: String,
    expires_at_ms: u64,
    /// What the user who redeems it becomes (a chatter unless the code says otherwise).
    #[serde(default)]
    role: Role,
}

/// The pending codes for a store at `store_path`.
pub struct Pairing {
    path: PathBuf,
}

/// `len` characters from [`ALPHABET`] (unambiguous letters and digits), from the system's
/// random source.
pub fn random_token(len: usize) -> Result<String, std::io::Error> {
    valor_config::tokens::random_token(ALPHABET, len)
}

/// `ABCD-EFGH`.
fn new_code() -> Result<String, std::io::Error> {
    let letters = random_token(8)?;
    Ok(format!("{}-{}", &letters[..4], &letters[4..]))
}

/// Codes compare without case, dashes or spaces.
fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl Pairing {
    pub fn for_store(store_path: &Path) -> Pairing {
        let mut name = store_path.file_name().unwrap_or_default().to_os_string();
        name.push(".pairing.json");
        Pairing {
            path: store_path.with_file_name(name),
        }
    }

    fn io(&self, source: std::io::Error) -> PairingError {
        PairingError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn load(&self) -> Result<Vec<Pending>, PairingError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(serde_json::from_slice::<Vec<Pending>>(&bytes)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.expires_at_ms > now_ms())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.io(e)),
        }
    }

    fn save(&self, pending: &[Pending]) -> Result<(), PairingError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let temp = self.path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| self.io(e))?;
        let json = serde_json::to_vec(pending).unwrap_or_default();
        file.write_all(&json).map_err(|e| self.io(e))?;
        file.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&temp, &self.path).map_err(|e| self.io(e))
    }

    /// Holds the pairing lock (`<store>.pairing.lock`) until dropped: `valor pair` and
    /// `valor run` read, change and write the codes one at a time.
    fn lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>, PairingError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.path.with_extension("lock"))
            .map_err(|e| self.io(e))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| self.io(std::io::Error::from(errno)))
    }

    /// A new code for a chatter, valid for [`CODE_VALID`].
    pub fn issue(&self) -> Result<String, PairingError> {
        self.issue_for(Role::Chatter)
    }

    /// A new code that makes its user `role`, valid for [`CODE_VALID`].
    pub fn issue_for(&self, role: Role) -> Result<String, PairingError> {
        let _lock = self.lock()?;
        let mut pending = self.load()?;
        if pending.len() >= MAX_PENDING {
            return Err(PairingError::TooManyPending);
        }
        let code = new_code().map_err(|e| self.io(e))?;
        pending.push(Pending {
            code: code.clone(),
            expires_at_ms: now_ms() + CODE_VALID.as_millis() as u64,
            role,
        });
        self.save(&pending)?;
        Ok(code)
    }

    /// Uses up `code` if it is pending; true when it was.
    pub fn redeem(&self, code: &str) -> Result<bool, PairingError> {
        Ok(self.redeem_role(code)?.is_some())
    }

    /// Uses up `code` if it is pending: the role it gives.
    pub fn redeem_role(&self, code: &str) -> Result<Option<Role>, PairingError> {
        let wanted = normalize(code);
        let _lock = self.lock()?;
        let mut pending = self.load()?;
        let Some(at) = pending.iter().position(|p| normalize(&p.code) == wanted) else {
            return Ok(None);
        };
        let redeemed = pending.remove(at);
        self.save(&pending)?;
        Ok(Some(redeemed.role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_one_time_and_at_most_three_wait() {
        let dir = tempfile::tempdir().unwrap();
        let pairing = Pairing::for_store(&dir.path().join("store"));
        let codes: Vec<String> = (0..3).map(|_| pairing.issue().unwrap()).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 9 && c.as_bytes()[4] == b'-'),
            "{codes:?}"
        );
        assert!(matches!(pairing.issue(), Err(PairingError::TooManyPending)));
        assert!(!pairing.redeem("AAAA-AAAA").unwrap());
        assert!(
            pairing
                .redeem(&codes[1].to_lowercase().replace('-', " "))
                .unwrap()
        );
        assert!(!pairing.redeem(&codes[1]).unwrap(), "used up");
        pairing.issue().unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("store.pairing.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn codes_issued_from_many_processes_at_once_are_all_kept() {
        // Without the lock, concurrent read-change-write loses codes.
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let issued: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|_| scope.spawn(|| Pairing::for_store(&store).issue().unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let pairing = Pairing::for_store(&store);
        for code in &issued {
            assert!(pairing.redeem(code).unwrap(), "{code} was lost");
        }
    }

    #[test]
    fn expired_codes_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let pairing = Pairing::for_store(&dir.path().join("store"));
        pairing
            .save(&[Pending {
                code: "ABCD-EFGH".to_owned(),
                expires_at_ms: now_ms() - 1,
                role: Role::Admin,
            }])
            .unwrap();
        assert!(!pairing.redeem("ABCD-EFGH").unwrap());
    }

    #[test]
    fn a_code_carries_its_role_and_old_codes_read_as_chatters() {
        let dir = tempfile::tempdir().unwrap();
        let pairing = Pairing::for_store(&dir.path().join("store"));
        let approver = pairing.issue_for(Role::Approver).unwrap();
        let chatter = pairing.issue().unwrap();
        assert_eq!(pairing.redeem_role(&chatter).unwrap(), Some(Role::Chatter));
        assert_eq!(
            pairing.redeem_role(&approver).unwrap(),
            Some(Role::Approver)
        );
        assert_eq!(pairing.redeem_role(&approver).unwrap(), None, "used up");
        // A file written before roles: its codes make chatters.
        let later = now_ms() + 60_000;
        std::fs::write(
            &pairing.path,
            format!(r#"[{{"code":"ABCD-EFGH","expires_at_ms":{later}}}]"#),
        )
        .unwrap();
        assert_eq!(
            pairing.redeem_role("abcd efgh").unwrap(),
            Some(Role::Chatter)
        );
    }
}
