//! Streaming a turn into chats of the fake Bot API, with real teloxide, in paused time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use teloxide::prelude::*;
use teloxide::types::ChatId;
use valor_fakes::telegram::FakeTelegram;
use valor_protocol::{Event, Events, TurnError, TurnErrorKind, TurnSummary};
use valor_telegram::format::{MAX_MESSAGE_UNITS, render};
use valor_telegram::pacer::{ChatKind, ChatPacer, PacerConfig};
use valor_telegram::stream::deliver;

fn bot(fake: &FakeTelegram) -> Bot {
    Bot::new(&fake.token).set_api_url(fake.url.parse().unwrap())
}

fn summary(text: &str) -> TurnSummary {
    TurnSummary::of_text("s", "m", text)
}

/// A turn that writes `text` in pieces of `piece` characters every `every`, then finishes.
fn scripted(text: String, piece: usize, every: Duration) -> Events {
    let (tx, stream) = Events::channel(64);
    tokio::spawn(async move {
        let _ = tx.send(Event::MessageStart).await;
        let chars: Vec<char> = text.chars().collect();
        for part in chars.chunks(piece) {
            tokio::time::sleep(every).await;
            let _ = tx.send(Event::TextDelta(part.iter().collect())).await;
        }
        let _ = tx.send(Event::Final(summary(&text))).await;
    });
    stream
}

fn non_space(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

fn shown(fake: &FakeTelegram, chat: i64) -> String {
    fake.messages(chat)
        .iter()
        .map(|m| m.visible.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

fn pacer() -> ChatPacer {
    ChatPacer::new(ChatKind::Private, PacerConfig::default())
}

#[tokio::test(start_paused = true)]
async fn a_60_second_answer_updates_every_2_to_3_seconds_without_a_429() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    // ~100 characters a second for 60 s, in paragraphs.
    let text: String = (0..60)
        .map(|i| format!("Step {i}: the parser now handles case {i} and the tests pass again.\n\n"))
        .collect::<String>();
    let seconds = 60.0;
    let every = Duration::from_secs_f64(seconds / (text.chars().count() as f64 / 20.0));
    let report = deliver(
        &bot,
        ChatId(1),
        &mut scripted(text.clone(), 20, every),
        None,
        &pacer(),
        None,
    )
    .await;
    assert!(report.error.is_none());
    assert!(fake.errors(429).is_empty(), "{:?}", fake.errors(429));
    assert_eq!(report.floods, 0);

    let times = fake.updates(1);
    let intervals: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let in_range = intervals
        .iter()
        .filter(|s| (2.0..=3.0).contains(*s))
        .count();
    let share = in_range as f64 / intervals.len() as f64;
    let mean = intervals.iter().sum::<f64>() / intervals.len() as f64;
    println!(
        "60 s answer: {} updates, {:.0}% of intervals in 2-3 s, mean {mean:.2} s, 429s: 0",
        times.len(),
        in_range as f64 * 100.0 / intervals.len() as f64
    );
    assert!(intervals.len() >= 20, "{} updates", intervals.len());
    assert!(
        share >= 0.9,
        "{:.0}% of {} intervals in 2-3 s: {intervals:?}",
        share * 100.0,
        intervals.len()
    );
    assert_eq!(
        non_space(&shown(&fake, 1)),
        non_space(&text),
        "the final text is exact"
    );
    // Typing was shown throughout, about every 4 s.
    assert!(
        fake.actions(1).len() >= 14,
        "{} typing actions",
        fake.actions(1).len()
    );
}

#[tokio::test(start_paused = true)]
async fn a_12000_character_answer_arrives_complete_in_order_without_duplicates() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let text: String = (0..40)
        .map(|i| {
            format!(
                "Paragraph {i:02}: {}\n\n",
                "the quick brown fox jumps over the lazy dog ".repeat(7)
            )
        })
        .collect();
    assert!(text.len() > 12_000);
    let report = deliver(
        &bot,
        ChatId(2),
        &mut scripted(text.clone(), 50, Duration::from_millis(20)),
        None,
        &pacer(),
        None,
    )
    .await;
    let messages = fake.messages(2);
    assert_eq!(messages.len(), render(&text, MAX_MESSAGE_UNITS).len());
    assert_eq!(report.messages.len(), messages.len());
    let all = shown(&fake, 2);
    assert_eq!(non_space(&all), non_space(&text));
    for i in 0..40 {
        assert_eq!(
            all.matches(&format!("Paragraph {i:02}:")).count(),
            1,
            "paragraph {i}"
        );
    }
    assert!(fake.errors(429).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_flood_wait_in_one_chat_does_not_delay_another() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let text = "A short answer that streams for a few seconds in small pieces. ".repeat(8);
    // Under the pacer's 60 s cap, so the flooded chat waits it out itself.
    fake.flood(3, Duration::from_secs(45));
    let start = tokio::time::Instant::now();
    let (flooded, other) = tokio::join!(
        async {
            let report = deliver(
                &bot,
                ChatId(3),
                &mut scripted(text.clone(), 10, Duration::from_millis(100)),
                None,
                &pacer(),
                None,
            )
            .await;
            (report, start.elapsed())
        },
        async {
            let report = deliver(
                &bot,
                ChatId(4),
                &mut scripted(text.clone(), 10, Duration::from_millis(100)),
                None,
                &pacer(),
                None,
            )
            .await;
            (report, start.elapsed())
        }
    );
    assert!(
        other.1 < Duration::from_secs(10),
        "the other chat took {:?}",
        other.1
    );
    assert!(
        flooded.1 >= Duration::from_secs(45),
        "the flooded chat waited out its penalty: {:?}",
        flooded.1
    );
    assert!(flooded.0.floods >= 1);
    // Neither lost its text; the flooded chat got no storm of retries.
    assert_eq!(non_space(&shown(&fake, 3)), non_space(&text));
    assert_eq!(non_space(&shown(&fake, 4)), non_space(&text));
    assert!(
        fake.errors(429).len() <= 2,
        "{} 429s",
        fake.errors(429).len()
    );
}

#[tokio::test(start_paused = true)]
async fn hostile_text_never_loses_a_message_to_a_parse_error() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let reserved = "_*[]()~`>#+-=|{}.!<&\"'\\";
    let text = format!(
        "{reserved}\n```\nunbalanced {reserved}\n\n{}\n**x `y\n<b>not a tag</i> &nbsp;",
        "🎉".repeat(2600)
    );
    let report = deliver(
        &bot,
        ChatId(5),
        &mut scripted(text.clone(), 40, Duration::from_millis(20)),
        None,
        &pacer(),
        None,
    )
    .await;
    assert!(fake.errors(400).is_empty(), "{:?}", fake.errors(400));
    assert_eq!(report.plain_fallbacks, 0);
    let all = shown(&fake, 5);
    assert_eq!(non_space(&all), non_space(&text.replacen("```", "", 1)));
}

#[tokio::test(start_paused = true)]
async fn a_failed_turn_keeps_what_was_written_and_says_what_happened() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let (tx, mut stream) = Events::channel(8);
    tokio::spawn(async move {
        let _ = tx.send(Event::TextDelta("Working on it".to_owned())).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let _ = tx
            .send(Event::Failed {
                error: TurnError::new(TurnErrorKind::Timeout, "idle"),
                partial: "Working on it".to_owned(),
            })
            .await;
    });
    let report = deliver(&bot, ChatId(6), &mut stream, None, &pacer(), None).await;
    assert_eq!(report.error.unwrap().kind, TurnErrorKind::Timeout);
    let all = shown(&fake, 6);
    assert!(all.starts_with("Working on it"), "{all}");
    assert!(
        all.ends_with(TurnErrorKind::Timeout.user_message()),
        "{all}"
    );
}

#[tokio::test(start_paused = true)]
async fn in_a_private_chat_the_preview_streams_as_a_draft_and_the_answer_comes_as_messages() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let text: String = (0..30)
        .map(|i| format!("Line {i} of a streamed answer.\n\n"))
        .collect();
    let start = tokio::time::Instant::now();
    let report = deliver(
        &bot,
        ChatId(7),
        &mut scripted(text.clone(), 10, Duration::from_millis(100)),
        None,
        &pacer(),
        Some(valor_telegram::stream::Drafts::new(bot.clone())),
    )
    .await;
    let drafts: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "sendmessagedraft")
        .collect();
    assert!(drafts.len() >= 5, "{} drafts", drafts.len());
    assert!(drafts.iter().all(|c| c.error.is_none()));
    // The first words showed as soon as they were written.
    assert!(
        drafts[0].at - start <= Duration::from_millis(150),
        "{:?}",
        drafts[0].at - start
    );
    assert_eq!(report.drafts, drafts.len());
    // The answer itself: messages, never edited.
    let messages = fake.messages(7);
    assert!(
        messages.iter().all(|m| m.edits == 0),
        "no edits with drafts"
    );
    assert_eq!(non_space(&shown(&fake, 7)), non_space(&text));
    assert!(fake.errors(429).is_empty());
}

#[tokio::test(start_paused = true)]
async fn tool_progress_shows_in_one_status_line_that_goes_when_the_answer_comes() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let (tx, mut stream) = Events::channel(64);
    tokio::spawn(async move {
        let step = Duration::from_millis(2500);
        let events = [
            Event::ToolCall {
                id: "1".to_owned(),
                name: "Read".to_owned(),
                input: serde_json::json!({"file_path": "src/main.rs"}),
            },
            Event::Retrying {
                attempt: 1,
                max_retries: 3,
                delay_ms: 2500,
                status: Some(529),
            },
            Event::ToolCall {
                id: "2".to_owned(),
                name: "mcp__social__search_current_info".to_owned(),
                input: serde_json::json!({"query": "rust"}),
            },
        ];
        for event in events {
            let _ = tx.send(event).await;
            tokio::time::sleep(step).await;
        }
        let _ = tx.send(Event::MessageStart).await;
        let _ = tx.send(Event::TextDelta("All done.".to_owned())).await;
        let _ = tx.send(Event::Final(summary("All done."))).await;
    });
    let delivering = {
        let bot = bot.clone();
        tokio::spawn(
            async move { deliver(&bot, ChatId(9), &mut stream, None, &pacer(), None).await },
        )
    };
    let mut seen: Vec<String> = Vec::new();
    while !delivering.is_finished() {
        for message in fake.messages(9) {
            if message.visible.starts_with("Working:") && !seen.contains(&message.visible) {
                let markup = message.reply_markup.as_ref().unwrap().to_string();
                assert!(markup.contains("\"stop\""), "a Stop button: {markup}");
                seen.push(message.visible.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = delivering.await.unwrap();
    assert_eq!(report.text, "All done.");
    assert_eq!(seen[0], "Working: reading src/main.rs", "{seen:?}");
    assert!(
        seen.iter()
            .any(|s| s.contains("the API is busy, retrying in 3 s")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|s| s.contains("searching the web")),
        "{seen:?}"
    );
    // One status message, edited in place, then removed: only the answer is left.
    let texts: Vec<String> = fake.messages(9).into_iter().map(|m| m.visible).collect();
    assert_eq!(texts, ["All done."]);
    assert_eq!(fake.deleted(), 1);
    let sends = fake
        .calls()
        .iter()
        .filter(|c| c.method == "sendmessage")
        .count();
    assert_eq!(sends, 2, "the status line and the answer");
    assert!(fake.errors(429).is_empty());
}

#[tokio::test(start_paused = true)]
async fn drafts_follow_the_text_at_least_every_half_second() {
    // A 4.5 s answer (measured against the peer: 3 previews from Valor, 10 from it).
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let text: String = (0..45).map(|i| format!("word{i} ")).collect();
    let piece = text.chars().count().div_ceil(45);
    let start = tokio::time::Instant::now();
    let report = deliver(
        &bot,
        ChatId(8),
        &mut scripted(text.clone(), piece, Duration::from_millis(100)),
        None,
        &pacer(),
        Some(valor_telegram::stream::Drafts::new(bot.clone())),
    )
    .await;
    let drafts: Vec<Duration> = fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "sendmessagedraft")
        .map(|c| c.at - start)
        .collect();
    assert!(drafts.len() >= 9, "{} drafts: {drafts:?}", drafts.len());
    let widest = drafts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(widest <= Duration::from_millis(500), "{drafts:?}");
    assert_eq!(report.drafts, drafts.len());
    assert!(fake.errors(429).is_empty());
    assert_eq!(
        non_space(&shown(&fake, 8)),
        non_space(&text),
        "the answer is exact"
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_without_drafts_gets_edits_instead() {
    let fake = FakeTelegram::start().await;
    fake.refuse_drafts();
    let bot = bot(&fake);
    let text: String = (0..30)
        .map(|i| format!("Line {i} of a streamed answer.\n\n"))
        .collect();
    let report = deliver(
        &bot,
        ChatId(8),
        &mut scripted(text.clone(), 10, Duration::from_millis(100)),
        None,
        &pacer(),
        Some(valor_telegram::stream::Drafts::new(bot.clone())),
    )
    .await;
    assert_eq!(report.drafts, 0);
    assert_eq!(fake.errors(404).len(), 1, "tried once, then edits");
    assert!(
        fake.messages(8).iter().any(|m| m.edits > 0),
        "streamed by edits"
    );
    assert_eq!(non_space(&shown(&fake, 8)), non_space(&text));
}

#[tokio::test(start_paused = true)]
async fn a_flood_wait_over_the_cap_defers_the_final_text_and_frees_the_chat() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let text = "An answer that meets a very long flood wait. ".repeat(4);
    let pacer = pacer();
    let start = tokio::time::Instant::now();
    // The first words go out, then Telegram imposes a 97-minute penalty.
    let (tx, mut stream) = Events::channel(8);
    let feed = async {
        let _ = tx.send(Event::TextDelta("An answer".to_owned())).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        fake.flood(10, Duration::from_secs(97 * 60));
        let _ = tx.send(Event::Final(summary(&text))).await;
    };
    let (report, ()) = tokio::join!(
        deliver(&bot, ChatId(10), &mut stream, None, &pacer, None),
        feed
    );
    // The chat was not held for 97 minutes.
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "{:?}",
        start.elapsed()
    );
    let deferred = report
        .deferred
        .expect("the final text was deferred, not dropped");
    assert!(
        fake.errors(429).len() <= 1,
        "{} 429s",
        fake.errors(429).len()
    );
    // Delivered once the penalty is over, exactly.
    assert!(valor_telegram::stream::finish_deferred(&bot, ChatId(10), deferred, &pacer).await);
    assert!(start.elapsed() >= Duration::from_secs(97 * 60));
    assert_eq!(non_space(&shown(&fake, 10)), non_space(&text));
}

/// A turn that waits `wait` for a slot, then answers.
fn waiting_then(wait: Duration) -> Events {
    let (tx, stream) = Events::channel(8);
    tokio::spawn(async move {
        let _ = tx.send(Event::WaitingForSlot { position: 2 }).await;
        tokio::time::sleep(wait).await;
        let started = Event::Started {
            session_id: "s".to_owned(),
            model: "m".to_owned(),
            failed_mcp_servers: Vec::new(),
        };
        let _ = tx.send(started).await;
        let _ = tx.send(Event::TextDelta("Here.".to_owned())).await;
        let _ = tx.send(Event::Final(summary("Here."))).await;
    });
    stream
}

#[tokio::test(start_paused = true)]
async fn only_a_wait_for_a_slot_that_lasts_shows_in_the_status_line() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let short = deliver(
        &bot,
        ChatId(11),
        &mut waiting_then(Duration::from_millis(500)),
        None,
        &pacer(),
        None,
    )
    .await;
    assert_eq!(short.text, "Here.");
    let sends = |chat: i64| {
        (fake.calls().iter())
            .filter(|c| c.method == "sendmessage" && c.chat_id == Some(chat))
            .count()
    };
    assert_eq!(sends(11), 1, "a short wait sends nothing but the answer");
    assert_eq!(fake.deleted(), 0);

    let long = tokio::spawn({
        let bot = bot.clone();
        async move {
            let mut events = waiting_then(Duration::from_secs(4));
            deliver(&bot, ChatId(12), &mut events, None, &pacer(), None).await
        }
    });
    let mut seen = None;
    while !long.is_finished() {
        if let Some(m) = (fake.messages(12).into_iter()).find(|m| m.visible.starts_with("Working:"))
        {
            seen = Some(m.visible);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(long.await.unwrap().text, "Here.");
    assert_eq!(
        seen.as_deref(),
        Some("Working: waiting for a free slot (2 ahead)")
    );
    let texts: Vec<String> = fake.messages(12).into_iter().map(|m| m.visible).collect();
    assert_eq!(texts, ["Here."], "the line went when the answer came");
    assert!(fake.errors(429).is_empty());
}
