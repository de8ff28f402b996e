//! The dashboard's logged-in browsers, so a restart does not log the operator out. Few (the
//! dashboard keeps 16 at most), each written once at login and removed at logout.

use super::{Store, decode, encode};
use crate::StoreError;
use valor_protocol::records::DashboardSession;

impl Store {
    /// Every kept session (expired ones too: the dashboard drops those).
    pub fn dashboard_sessions(&self) -> Result<Vec<DashboardSession>, StoreError> {
        self.dashboard_sessions
            .iter()
            .map(|entry| {
                let (_, bytes) = entry?;
                decode("dashboard session", &bytes)
            })
            .collect()
    }

    /// Keeps a session (the caller commits).
    pub fn put_dashboard_session(&self, session: &DashboardSession) -> Result<(), StoreError> {
        self.dashboard_sessions
            .insert(session.key.as_bytes(), encode(session))?;
        Ok(())
    }

    pub fn remove_dashboard_session(&self, key: &str) -> Result<(), StoreError> {
        self.dashboard_sessions.remove(key.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sessions_are_kept_across_a_reopen_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let session = |key: &str| DashboardSession {
            key: key.to_owned(),
            csrf: "c".repeat(40),
            started_ms: 1,
            last_seen_ms: 2,
            agent: "Mozilla/5.0".to_owned(),
        };
        {
            let store = Store::open(&path).unwrap();
            store.put_dashboard_session(&session("a")).unwrap();
            store.put_dashboard_session(&session("b")).unwrap();
            store.remove_dashboard_session("a").unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.dashboard_sessions().unwrap(), vec![session("b")]);
    }
}
