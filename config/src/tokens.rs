//! Random tokens, and the token that lets local processes use the agent's memory API.

use std::io::Write;
use std::path::{Path, PathBuf};

/// `len` characters drawn from `alphabet` with the system's random source.
pub fn random_token(alphabet: &[u8], len: usize) -> Result<String, std::io::Error> {
    if alphabet.is_empty() {
        return Err(std::io::Error::other("empty alphabet"));
    }
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))?;
    Ok(bytes
        .iter()
        .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
        .collect())
}

/// `<store>.api-token`: readable by its owner only.
pub fn api_token_path(store_path: &Path) -> PathBuf {
    let mut path = store_path.as_os_str().to_owned();
    path.push(".api-token");
    PathBuf::from(path)
}

/// `<store>.api-url`: where the agent that owns the store listens.
fn api_url_path(store_path: &Path) -> PathBuf {
    let mut path = store_path.as_os_str().to_owned();
    path.push(".api-url");
    PathBuf::from(path)
}

/// Records the running agent's base URL (its port may have been picked by the system).
pub fn write_api_url(store_path: &Path, url: &str) -> Result<(), std::io::Error> {
    std::fs::write(api_url_path(store_path), url)
}

/// The base URL the agent that owns the store recorded, if any.
pub fn api_url(store_path: &Path) -> Option<String> {
    std::fs::read_to_string(api_url_path(store_path))
        .ok()
        .map(|url| url.trim().to_owned())
        .filter(|url| url.starts_with("http://"))
}

/// The memory API's token for the store at `store_path`, created on first use (mode 0600).
pub fn api_token(store_path: &Path) -> Result<String, std::io::Error> {
    let path = api_token_path(store_path);
    match std::fs::read_to_string(&path) {
        Ok(token) if token.trim().len() >= 32 => return Ok(token.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = random_token(b"0123456789abcdef", 48)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let token = api_token(&store).unwrap();
        assert_eq!(token.len(), 48);
        assert_eq!(api_token(&store).unwrap(), token);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(api_token_path(&store))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_ne!(
            random_token(b"ab", 64).unwrap(),
            random_token(b"ab", 64).unwrap()
        );
    }
}
