#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};

use crate::{ChatDir, ChatFs, ChatFsError, Kind, Owner};

/// A workspace of chat 1 beside chat 2's, which holds a secret.
fn two_chats() -> (tempfile::TempDir, ChatDir, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let fs = ChatFs::new(root.path().join("ws"), root.path().join("homes"), None);
    let mine = fs.workspace(1).unwrap();
    let theirs = fs.workspace(2).unwrap();
    let secret = theirs.join("plans.txt");
    std::fs::write(&secret, "CHAT-2-SECRET").unwrap();
    (root, mine, secret)
}

#[test]
fn a_file_below_the_root_is_read_and_a_link_anywhere_is_refused() {
    let (_root, mine, secret) = two_chats();
    std::fs::create_dir_all(mine.join("notes")).unwrap();
    std::fs::write(mine.join("notes/a.txt"), "mine").unwrap();
    assert_eq!(mine.read_to_string("notes/a.txt", 100).unwrap(), "mine");
    assert_eq!(
        mine.read_to_string(mine.join("notes/a.txt"), 100).unwrap(),
        "mine",
        "an absolute path below the root"
    );
    // A link at the end, a linked folder on the way, a link that stays inside: all refused.
    symlink(&secret, mine.join("leak.txt")).unwrap();
    symlink(secret.parent().unwrap(), mine.join("other")).unwrap();
    symlink(mine.join("notes/a.txt"), mine.join("inside.txt")).unwrap();
    for path in ["leak.txt", "other/plans.txt", "inside.txt"] {
        let error = mine.read(path, 100).unwrap_err();
        assert!(matches!(error, ChatFsError::Link(_)), "{path}: {error}");
        assert!(error.is_refusal());
    }
    for path in [
        "../chat_2/plans.txt",
        "notes/../../chat_2/plans.txt",
        "/etc/passwd",
    ] {
        let error = mine.read(path, 100).unwrap_err();
        assert!(matches!(error, ChatFsError::Outside(_)), "{path}: {error}");
    }
    assert!(matches!(
        mine.read("missing.txt", 100),
        Err(ChatFsError::NotFound(_))
    ));
    assert!(matches!(
        mine.read("notes", 100),
        Err(ChatFsError::NotAFile(_))
    ));
}

#[test]
fn a_fifo_is_refused_without_blocking_and_a_big_file_is_refused_whole() {
    let (_root, mine, _) = two_chats();
    let fifo = mine.join("pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    // A blocking open of a FIFO with no writer would never return.
    assert!(matches!(
        mine.read("pipe", 100),
        Err(ChatFsError::NotAFile(_))
    ));
    std::fs::write(mine.join("big"), vec![b'x'; 2048]).unwrap();
    let error = mine.read("big", 1024).unwrap_err();
    assert!(
        matches!(
            error,
            ChatFsError::TooLarge {
                size: 2048,
                max: 1024,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn folders_are_made_beneath_and_never_through_a_planted_link() {
    let (_root, mine, secret) = two_chats();
    let theirs = secret.parent().unwrap();
    symlink(theirs, mine.join("received")).unwrap();
    let error = mine.create_dir_all("received/today").unwrap_err();
    assert!(matches!(error, ChatFsError::Link(_)), "{error}");
    assert!(!theirs.join("today").exists());
    let made = mine.create_dir_all("screenshots/2026").unwrap();
    assert_eq!(made.path(), mine.join("screenshots/2026"));
    let mode = std::fs::metadata(made.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    // Again is fine.
    mine.create_dir_all("screenshots/2026").unwrap();
}

#[test]
fn new_files_are_private_and_never_written_through_a_link() {
    let (_root, mine, secret) = two_chats();
    let mut file = mine.create_new("report.md").unwrap();
    file.write_all(b"# report").unwrap();
    let mode = std::fs::metadata(mine.join("report.md"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(mine.create_new("report.md").is_err(), "never over a file");
    symlink(&secret, mine.join("planted.md")).unwrap();
    assert!(mine.create_new("planted.md").is_err());
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "CHAT-2-SECRET");
}

#[test]
fn an_atomic_write_replaces_a_planted_link_instead_of_following_it() {
    let (_root, mine, secret) = two_chats();
    symlink(&secret, mine.join("LEARNED_INSIGHTS.md")).unwrap();
    mine.write_atomic("LEARNED_INSIGHTS.md", b"learned")
        .unwrap();
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "CHAT-2-SECRET");
    let entry = mine.entry("LEARNED_INSIGHTS.md").unwrap().unwrap();
    assert_eq!(entry.kind, Kind::File);
    assert_eq!(mine.read("LEARNED_INSIGHTS.md", 100).unwrap(), b"learned");
    // Nothing is left beside it.
    let names: Vec<String> = mine
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["LEARNED_INSIGHTS.md"]);
    // A folder on the way that is a link is refused.
    symlink(secret.parent().unwrap(), mine.join("linked")).unwrap();
    assert!(matches!(
        mine.write_atomic("linked/x.md", b"x"),
        Err(ChatFsError::Link(_))
    ));
    assert!(!secret.parent().unwrap().join("x.md").exists());
}

#[test]
fn entries_show_links_as_links_and_removal_never_follows_them() {
    let (_root, mine, secret) = two_chats();
    std::fs::create_dir_all(mine.join("tree/deep")).unwrap();
    std::fs::write(mine.join("tree/deep/f"), "x").unwrap();
    symlink(secret.parent().unwrap(), mine.join("tree/out")).unwrap();
    let tree = mine.subdir("tree").unwrap();
    let mut kinds: Vec<(String, Kind)> = tree
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| (e.name.to_string_lossy().into_owned(), e.kind))
        .collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        kinds,
        [
            ("deep".to_owned(), Kind::Dir),
            ("out".to_owned(), Kind::Symlink)
        ]
    );
    assert!(mine.disk_usage().unwrap() > 0);
    mine.remove("tree").unwrap();
    assert!(!mine.join("tree").exists());
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "CHAT-2-SECRET");
    mine.remove("tree").unwrap();
    assert!(matches!(mine.subdir("tree"), Err(ChatFsError::NotFound(_))));
}

#[test]
fn a_root_that_is_a_link_is_refused() {
    let (root, mine, secret) = two_chats();
    let link = root.path().join("ws/chat_3");
    symlink(secret.parent().unwrap(), &link).unwrap();
    let fs = ChatFs::new(root.path().join("ws"), root.path().join("homes"), None);
    assert!(matches!(fs.workspace(3), Err(ChatFsError::Link(_))));
    assert!(matches!(
        fs.existing_workspace(3),
        Err(ChatFsError::Link(_))
    ));
    assert!(fs.existing_workspace(4).unwrap().is_none());
    assert_eq!(fs.paths(1).workspace, mine.path());
    assert_eq!(fs.paths(-5).home, root.path().join("homes/chat_-5"));
}

#[test]
fn as_root_what_valor_makes_is_the_sandboxs() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: giving files to another user needs root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let owner = Owner {
        uid: 4_000_123,
        gid: 4_000_123,
    };
    // A workspace made before sandboxes had their own user is given to it, links untouched.
    let old = root.path().join("ws/chat_9");
    std::fs::create_dir_all(old.join("src")).unwrap();
    std::fs::write(old.join("src/main.rs"), "fn main() {}").unwrap();
    symlink("/etc/hostname", old.join("src/link")).unwrap();
    let fs = ChatFs::new(
        root.path().join("ws"),
        root.path().join("homes"),
        Some(owner),
    );
    let ws = fs.workspace(9).unwrap();
    for path in ["", "src", "src/main.rs"] {
        assert_eq!(
            std::fs::symlink_metadata(ws.join(path)).unwrap().uid(),
            owner.uid,
            "{path}"
        );
    }
    assert_eq!(std::fs::metadata("/etc/hostname").unwrap().uid(), 0);
    ws.create_dir_all("received").unwrap();
    ws.create_new("received/a.jpg").unwrap();
    ws.write_atomic("NOTES.md", b"x").unwrap();
    for path in ["received", "received/a.jpg", "NOTES.md"] {
        let meta = std::fs::metadata(ws.join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (owner.uid, owner.gid), "{path}");
    }
    // Valor's own roots stay Valor's.
    assert_eq!(std::fs::metadata(root.path().join("ws")).unwrap().uid(), 0);
    assert_eq!(
        std::fs::metadata(fs.home(9).unwrap().path()).unwrap().uid(),
        owner.uid
    );
}
