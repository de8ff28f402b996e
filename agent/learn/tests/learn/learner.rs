//! The learner over a real store and the real embedding model (scripts/setup fetches it):
//! deduplication by meaning and the confidence ladder, retirement by a switch, /forget,
//! manual learnings, the context ranking, the model-less fallback, export and transfer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use std::sync::Arc;
use valor_learn::{Accepted, LearnError, LearnSettings, Learner, LearningStore as _};
use valor_memory::{Filter, Memory, MemorySettings, Query};

use valor_store::{Category, MemoryKind, Store};

const CHAT: i64 = 42;

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
}

async fn learner_with(dir: &Path, model: PathBuf) -> (Learner, Memory, Store) {
    let store_path = dir.join("store");
    let store = Store::open(&store_path).unwrap();
    let memory = Memory::open(
        Arc::new(store.clone()),
        MemorySettings::beside(&store_path, model),
    )
    .unwrap();
    memory.prepare().await;
    (
        Learner::new(
            memory.clone(),
            Arc::new(store.clone()),
            LearnSettings::default(),
        ),
        memory,
        store,
    )
}

/// The watcher's proposal for `text`, accepted.
async fn say_yes(learner: &Learner, text: &str, source: &str, now: u64) -> Accepted {
    let proposal = learner
        .watch(CHAT, text, source, now)
        .unwrap_or_else(|| panic!("the watcher asks about {text:?}"));
    learner.accept(&proposal, now).await.unwrap()
}

async fn search_ids(memory: &Memory, text: &str) -> Vec<u64> {
    let query = Query {
        text: text.to_owned(),
        filter: Filter {
            kinds: vec![MemoryKind::Learning],
            ..Filter::default()
        },
        limit: 10,
    };
    memory
        .search(&query)
        .await
        .unwrap()
        .hits
        .iter()
        .map(|h| h.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_learning_is_reinforced_up_the_confidence_ladder() {
    let dir = tempfile::tempdir().unwrap();
    let (learner, memory, _) = learner_with(dir.path(), model()).await;
    assert!(
        memory.model_id().is_some(),
        "run scripts/setup for the model"
    );

    let first = say_yes(
        &learner,
        "We decided to use PostgreSQL for the main database.",
        "tg:1",
        1_000,
    )
    .await;
    let Accepted::New {
        learning, retired, ..
    } = &first
    else {
        panic!("{first:?}")
    };
    assert!(retired.is_empty());
    assert_eq!((learning.number, learning.times_seen), (1, 1));
    assert_eq!(learning.confidence, 0.5);
    assert_eq!(learning.category, Category::Decision);
    assert_eq!(learning.trigger.as_deref(), Some("decided_to_use"));

    // Said again in other words (cosine 0.87-0.97 with the first): the same learning, firmer.
    let again = [
        "We've decided to use Postgres for our main database.",
        "We decided to use PostgreSQL for the main database!",
        "We decided to go with PostgreSQL for the main database.",
        "We decided to use PostgreSQL for the main database.",
    ];
    let mut ladder = Vec::new();
    for (i, text) in again.iter().enumerate() {
        match say_yes(&learner, text, &format!("tg:{}", i + 2), 2_000 + i as u64).await {
            Accepted::Reinforced {
                learning,
                similarity,
            } => {
                assert!(similarity > 0.85, "{similarity}");
                ladder.push((learning.times_seen, learning.confidence));
            }
            other => panic!("{text:?} should reinforce #1: {other:?}"),
        }
    }
    assert_eq!(ladder, [(2, 0.7), (3, 0.85), (4, 0.85), (5, 0.95)]);
    let kept = learner.list(CHAT).await.unwrap();
    assert_eq!(kept.len(), 1, "one learning, not five");
    assert_eq!(kept[0].sources, ["tg:1", "tg:2", "tg:3", "tg:4", "tg:5"]);

    // Something else (MySQL is 0.77 from it) is a learning of its own.
    let other = say_yes(
        &learner,
        "We decided to use MySQL for the analytics database.",
        "tg:9",
        9_000,
    )
    .await;
    assert!(matches!(other, Accepted::New { .. }), "{other:?}");
    assert_eq!(learner.list(CHAT).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_retires_the_learning_it_replaces_from_search_and_context() {
    let dir = tempfile::tempdir().unwrap();
    let (learner, memory, store) = learner_with(dir.path(), model()).await;
    let old = learner
        .remember(CHAT, "We use Bootstrap for all our styling.", "tg:1", 1_000)
        .await
        .unwrap();
    let old = old.learning().clone();
    assert!(old.manual);
    assert_eq!(old.confidence, 1.0);
    say_yes(
        &learner,
        "Watch out for timezones when you compare invoice dates.",
        "tg:2",
        2_000,
    )
    .await;
    assert!(
        search_ids(&memory, "Bootstrap styling")
            .await
            .contains(&old.id)
    );

    let switch = say_yes(
        &learner,
        "We're switching from Bootstrap to Tailwind.",
        "tg:3",
        3_000,
    )
    .await;
    let Accepted::New {
        learning: new,
        retired,
        ..
    } = &switch
    else {
        panic!("{switch:?}")
    };
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0].id, old.id);
    assert!(switch.describe().contains("Retired #1"));

    // Gone from search, from the list and from the context; kept in history with why.
    assert!(
        !search_ids(&memory, "Bootstrap styling")
            .await
            .contains(&old.id)
    );
    assert!(search_ids(&memory, "Tailwind").await.contains(&new.id));
    let context: Vec<u64> = learner
        .for_context(CHAT)
        .await
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(context.len(), 2);
    assert!(!context.contains(&old.id));
    let history = store.learnings_of(Some(CHAT), true).await.unwrap();
    let kept_old = history.iter().find(|l| l.id == old.id).unwrap();
    let retirement = kept_old.retired.as_ref().unwrap();
    assert_eq!(retirement.replaced_by, Some(new.id));
    assert!(
        retirement.reason.starts_with("replaced by #3"),
        "{}",
        retirement.reason
    );

    // The way back reads almost the same (cosine 0.99) and says the opposite: it is a new
    // learning that retires the switch, not a repeat of it.
    let back = say_yes(
        &learner,
        "We're switching from Tailwind to Bootstrap.",
        "tg:4",
        4_000,
    )
    .await;
    let Accepted::New { retired, .. } = &back else {
        panic!("{back:?}")
    };
    assert_eq!(retired.iter().map(|l| l.id).collect::<Vec<_>>(), [new.id]);

    // Retirement survives a restart: the store no longer has the memory.
    drop(learner);
    drop(memory);
    drop(store);
    let (learner, memory, _) = learner_with(dir.path(), model()).await;
    memory.loaded().await;
    assert!(!search_ids(&memory, "Tailwind").await.contains(&new.id));
    assert_eq!(learner.list(CHAT).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_retires_by_number_and_the_context_ranks_by_confidence() {
    let dir = tempfile::tempdir().unwrap();
    let (learner, _, store) = learner_with(dir.path(), model()).await;
    let low = say_yes(
        &learner,
        "The nightly build has become painfully slow.",
        "tg:1",
        1_000,
    )
    .await;
    let manual = learner
        .remember(CHAT, "Releases go out on Tuesdays.", "tg:2", 2_000)
        .await
        .unwrap();
    let twice = say_yes(
        &learner,
        "We ruled out Kubernetes, it's too much for a team of three.",
        "tg:3",
        3_000,
    )
    .await;
    say_yes(
        &learner,
        "We ruled out Kubernetes, it's too much for a team of three.",
        "tg:4",
        4_000,
    )
    .await;
    let order: Vec<u64> = learner
        .for_context(CHAT)
        .await
        .iter()
        .map(|l| l.number)
        .collect();
    assert_eq!(
        order,
        [
            manual.learning().number,
            twice.learning().number,
            low.learning().number
        ]
    );

    let forgotten = learner
        .forget(CHAT, low.learning().number, 5_000)
        .await
        .unwrap();
    assert_eq!(forgotten.retired.unwrap().reason, "forgotten by the user");
    assert!(store.document(low.learning().id).unwrap().is_none());
    let again = learner
        .forget(CHAT, low.learning().number, 6_000)
        .await
        .unwrap_err();
    assert!(matches!(again, LearnError::NoSuchLearning(1)));
    assert_eq!(
        again.to_string(),
        "there is no active learning #1 in this chat (see /learnings)"
    );
    // Another chat's numbers are its own.
    assert!(
        learner
            .forget(CHAT + 1, manual.learning().number, 7_000)
            .await
            .is_err()
    );
    assert!(learner.remember(CHAT, "   ", "tg:5", 8_000).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_model_only_the_same_words_are_a_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let (learner, memory, _) = learner_with(dir.path(), dir.path().join("no-model")).await;
    assert!(memory.model_id().is_none());
    let first = say_yes(
        &learner,
        "We decided to use GraphQL for the public API.",
        "tg:1",
        1_000,
    )
    .await;
    let same = say_yes(
        &learner,
        "we decided to use graphql for the public api",
        "tg:2",
        2_000,
    )
    .await;
    assert!(matches!(same, Accepted::Reinforced { similarity, .. } if similarity == 1.0));
    let other = say_yes(
        &learner,
        "We've decided to use GraphQL for our public API.",
        "tg:3",
        3_000,
    )
    .await;
    assert!(matches!(other, Accepted::New { .. }));
    assert_eq!(first.learning().number, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_asks_only_confident_statements() {
    let dir = tempfile::tempdir().unwrap();
    let (learner, memory, store) = learner_with(dir.path(), model()).await;
    let proposal = learner
        .watch(
            CHAT,
            "Morning! We're switching from Bootstrap to Tailwind.",
            "tg:7",
            10,
        )
        .unwrap();
    assert_eq!(proposal.text, "We're switching from Bootstrap to Tailwind.");
    assert_eq!(proposal.expires_ms, 10 + valor_store::PROPOSAL_TTL_MS);
    let draft = proposal.learning.unwrap();
    assert_eq!(draft.replaces.as_deref(), Some("Bootstrap"));
    assert_eq!(draft.trigger.as_deref(), Some("switching"));
    assert!(draft.detected_pct >= 90);
    assert!(
        learner
            .watch(
                CHAT,
                "Should we switch from Bootstrap to Tailwind?",
                "tg:8",
                10
            )
            .is_none()
    );
    // A chat of its own threshold (nothing reaches 1): asked elsewhere, not there.
    let strict = Learner::new(
        memory.clone(),
        Arc::new(store.clone()),
        LearnSettings {
            ask_threshold_by_chat: [(CHAT, 1.0)].into_iter().collect(),
            ..LearnSettings::default()
        },
    );
    assert!(
        strict
            .watch(
                CHAT + 1,
                "We're switching from Bootstrap to Tailwind.",
                "tg:9",
                10
            )
            .is_some()
    );
    assert!(
        strict
            .watch(
                CHAT,
                "We're switching from Bootstrap to Tailwind.",
                "tg:9",
                10
            )
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learnings_export_to_markdown_and_move_between_stores_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (learner, _, store) = learner_with(dir.path(), dir.path().join("no-model")).await;
    learner
        .remember(CHAT, "We use Bootstrap for styling.", "tg:1", 1_000)
        .await
        .unwrap();
    say_yes(
        &learner,
        "We're switching from Bootstrap to Tailwind.",
        "tg:2",
        2_000,
    )
    .await;
    learner
        .remember(
            CHAT + 1,
            "Edge case: usernames can contain emoji.",
            "tg:3",
            3_000,
        )
        .await
        .unwrap();

    let out = dir.path().join("export");
    let written = valor_learn::export::export(&store, &out, None)
        .await
        .unwrap();
    assert_eq!(written.len(), 2);
    let text =
        std::fs::read_to_string(out.join(format!("chat-{CHAT}/LEARNED_INSIGHTS.md"))).unwrap();
    assert!(text.starts_with(&format!("# Learned insights: chat {CHAT}\n")));
    assert!(text.contains("## Dependency\n\n- **#2** We're switching from Bootstrap to Tailwind. _(confidence 0.50, seen 1×, since 1970-01-01)_"), "{text}");
    assert!(text.contains("## Retired\n\n- ~~#1 We use Bootstrap for styling.~~ (replaced by #2: We're switching from Bootstrap to Tailwind., 1970-01-01)"), "{text}");
    let one = valor_learn::export::export(&store, &out, Some(CHAT + 1))
        .await
        .unwrap();
    assert_eq!((one.len(), one[0].active, one[0].retired), (1, 1, 0));

    let mut exported = Vec::new();
    let moved = valor_memory::transfer::export(&store, &mut exported)
        .await
        .unwrap();
    assert_eq!(moved.learnings, 3);
    let target = tempfile::tempdir().unwrap();
    let store = Store::open(target.path()).unwrap();
    valor_memory::transfer::import(&store, &mut exported.as_slice())
        .await
        .unwrap();
    let mut again = Vec::new();
    valor_memory::transfer::export(&store, &mut again)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(again).unwrap(),
        String::from_utf8(exported).unwrap()
    );
    // Numbers go on after the imported ones; the retired one stays out of search.
    let next = store
        .add_learning(store.learnings_of(Some(CHAT), false).await.unwrap()[0].clone())
        .unwrap();
    assert_eq!(next.number, 3);
    assert_eq!(store.learnings_of(Some(CHAT), true).await.unwrap().len(), 3);
}

#[tokio::test]
async fn the_workspace_file_never_goes_through_a_link_the_chat_planted() {
    let dir = tempfile::tempdir().unwrap();
    let (learner, _, store) = learner_with(dir.path(), dir.path().join("no-model")).await;
    learner
        .remember(CHAT, "We deploy on Fridays.", "tg:1", 1_000)
        .await
        .unwrap();
    let chats = valor_chatfs::ChatFs::new(dir.path().join("ws"), dir.path().join("homes"), None);
    let ours = chats.workspace(CHAT).unwrap();
    let theirs = chats.workspace(CHAT + 1).unwrap();
    std::fs::write(theirs.join("CLAUDE.md"), "CHAT-43-INSTRUCTIONS").unwrap();
    // Both names Valor once wrote through: the file and the temporary file beside it.
    for name in ["LEARNED_INSIGHTS.md", ".LEARNED_INSIGHTS.md.partial"] {
        std::os::unix::fs::symlink(theirs.join("CLAUDE.md"), ours.join(name)).unwrap();
    }
    valor_learn::export::write_into_workspace(&store, CHAT, chats.workspace(CHAT).unwrap())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(theirs.join("CLAUDE.md")).unwrap(),
        "CHAT-43-INSTRUCTIONS"
    );
    let written = std::fs::symlink_metadata(ours.join("LEARNED_INSIGHTS.md")).unwrap();
    assert!(
        written.file_type().is_file(),
        "the link was replaced by the file"
    );
    let text = std::fs::read_to_string(ours.join("LEARNED_INSIGHTS.md")).unwrap();
    assert!(text.contains("We deploy on Fridays."), "{text}");
}

#[tokio::test]
async fn statements_no_rule_knows_are_asked_about_with_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (learner, _, _) = learner_with(dir.path(), model()).await;
    let (rules_only, _, _) =
        learner_with(&dir.path().join("no-model"), dir.path().join("none")).await;
    // A casual switch is a rule's now; the model still finds what no rule knows.
    assert!(
        rules_only
            .watch(
                CHAT,
                "We've ditched Heroku, everything runs on Fly.io now.",
                "tg:0",
                1
            )
            .is_some()
    );
    {
        let text = "We gave up on the microfrontends approach.";
        assert!(
            rules_only.watch(CHAT, text, "tg:1", 1).is_none(),
            "the rules alone miss {text:?}"
        );
        let asked = learner
            .watch(CHAT, text, "tg:1", 1)
            .unwrap_or_else(|| panic!("asked about {text:?}"));
        assert_eq!(asked.text, text);
    }
    let heroku = learner
        .watch(
            CHAT,
            "We've ditched Heroku, everything runs on Fly.io now.",
            "tg:2",
            1,
        )
        .unwrap();
    assert_eq!(heroku.learning.unwrap().replaces.as_deref(), Some("Heroku"));
    for text in [
        "Should we ditch Heroku?",
        "lol we ditched Heroku for a toaster",
        "Good morning!",
    ] {
        assert!(learner.watch(CHAT, text, "tg:3", 1).is_none(), "{text:?}");
    }
}

#[tokio::test]
async fn a_contradiction_lowers_confidence_and_lists_for_review() {
    let dir = tempfile::tempdir().unwrap();
    let (learner, _, store) = learner_with(dir.path(), model()).await;
    let first = learner
        .remember(CHAT, "We deploy to production on Fridays.", "tg:1", 1)
        .await
        .unwrap();
    assert_eq!(first.learning().confidence, 1.0);
    let other = learner
        .remember(CHAT, "The staging database is shared with QA.", "tg:2", 2)
        .await
        .unwrap();
    let second = learner
        .remember(CHAT, "We never deploy to production on Fridays.", "tg:3", 3)
        .await
        .unwrap();
    let Accepted::New { contradicted, .. } = &second else {
        panic!("a statement said the other way is no repeat: {second:?}");
    };
    assert_eq!(contradicted.len(), 1, "{contradicted:?}");
    assert_eq!(contradicted[0].number, first.learning().number);
    assert!((contradicted[0].confidence - 0.7).abs() < 1e-6);
    assert!(
        second.describe().contains("/learnings review"),
        "{}",
        second.describe()
    );
    let review = learner.to_review(CHAT).await.unwrap();
    assert_eq!(review.len(), 1);
    assert!(
        review[0]
            .review
            .as_deref()
            .unwrap()
            .contains("contradicted by #3")
    );
    let untouched = store.learnings_of(Some(CHAT), false).await.unwrap();
    let untouched = untouched
        .iter()
        .find(|l| l.number == other.learning().number)
        .unwrap();
    assert_eq!(
        (untouched.confidence, untouched.review.is_none()),
        (1.0, true)
    );

    // Through the chat's commands: /learnings review lists it; confirming it again clears it.
    let chat = valor_learn::ChatLearning::new(Arc::new(store.clone()), Some(learner.clone()));
    let shown = valor_core::learning::command(
        &chat,
        CHAT,
        &valor_protocol::Command::Learnings { review: true },
        "tg:4",
    )
    .await
    .unwrap();
    assert!(
        shown.contains("#1 We deploy to production on Fridays. (confidence 0.70)"),
        "{shown}"
    );
    learner
        .remember(CHAT, "We deploy to production on Fridays.", "tg:5", 5)
        .await
        .unwrap();
    assert!(learner.to_review(CHAT).await.unwrap().is_empty());
    let none = valor_core::learning::command(
        &chat,
        CHAT,
        &valor_protocol::Command::Learnings { review: true },
        "tg:6",
    )
    .await
    .unwrap();
    assert!(none.starts_with("Nothing to review"), "{none}");
}
