//! Real teloxide against the fake Bot API: Telegram's errors arrive as teloxide's real error
//! variants, polling confirms offsets, and what the formatter produces is accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use teloxide::prelude::*;
use teloxide::types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId, ParseMode};
use teloxide::{ApiError, RequestError};
use valor_fakes::telegram::{FakeTelegram, parse_html};
use valor_telegram::format::{MAX_MESSAGE_UNITS, render};
use valor_telegram::pacer::{ChatKind, ChatPacer, PacerConfig, Permit};

fn bot(fake: &FakeTelegram) -> Bot {
    Bot::new(&fake.token).set_api_url(fake.url.parse().unwrap())
}

#[tokio::test(start_paused = true)]
async fn telegrams_errors_become_teloxides_real_variants() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let me = bot.get_me().await.unwrap();
    assert_eq!(me.username(), "valor_test_bot");

    let chat = ChatId(42);
    let sent = bot
        .send_message(chat, "<b>hi</b> &amp; bye")
        .parse_mode(ParseMode::Html)
        .await
        .unwrap();
    assert_eq!(fake.messages(42)[0].visible, "hi & bye");

    // A second message within a second: 429 with retry_after.
    match bot.send_message(chat, "again").await {
        Err(RequestError::RetryAfter(secs)) => assert_eq!(secs.seconds(), 1),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let long = "x".repeat(4097);
    assert!(matches!(
        bot.send_message(chat, long).await,
        Err(RequestError::Api(ApiError::MessageIsTooLong))
    ));
    assert!(matches!(
        bot.send_message(chat, "<b>open").parse_mode(ParseMode::Html).await,
        Err(RequestError::Api(ApiError::CantParseEntities(text))) if text.contains("Can't find end tag")
    ));
    assert!(matches!(
        bot.edit_message_text(chat, sent.id, "<b>hi</b> &amp; bye")
            .parse_mode(ParseMode::Html)
            .await,
        Err(RequestError::Api(ApiError::MessageNotModified))
    ));
    let button = InlineKeyboardButton::callback("Remember", "x".repeat(65));
    assert!(matches!(
        bot.send_message(chat, "ask")
            .reply_markup(InlineKeyboardMarkup::new([[button]]))
            .await,
        Err(RequestError::Api(ApiError::ButtonDataInvalid))
    ));
    assert!(matches!(
        bot.edit_message_text(chat, MessageId(9999), "nope").await,
        Err(RequestError::Api(ApiError::MessageToEditNotFound))
    ));
    // A failed request is not a message: none of the refused ones counted.
    assert_eq!(fake.messages(42).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn long_polling_delivers_and_confirms_updates() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let first = fake.user_says(7, 7, "hello");
    let updates = bot.get_updates().timeout(1).await.unwrap();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].id.0 as i64, first);
    // Until confirmed by the next offset, an update is delivered again.
    assert_eq!(bot.get_updates().timeout(0).await.unwrap().len(), 1);
    let waiting = tokio::spawn({
        let bot = bot.clone();
        async move {
            bot.get_updates()
                .offset(first as i32 + 1)
                .timeout(5)
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = fake.user_says(7, 7, "are you there?");
    let updates = waiting.await.unwrap();
    assert_eq!(
        updates.iter().map(|u| u.id.0 as i64).collect::<Vec<_>>(),
        [second]
    );
    assert_eq!(fake.confirmed_up_to(), first);

    let query = fake.user_presses(7, 7, 1, "remember:1");
    assert_eq!(fake.unanswered_callbacks(), std::slice::from_ref(&query));
    bot.answer_callback_query(teloxide::types::CallbackQueryId(query))
        .await
        .unwrap();
    assert!(fake.unanswered_callbacks().is_empty());
}

#[tokio::test(start_paused = true)]
async fn everything_the_formatter_makes_is_accepted() {
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    let reserved = "_*[]()~`>#+-=|{}.!<&\"'\\";
    let source = format!(
        "{reserved} **bold** `code`\n\n```rust\nfn main() {{ if a < b && c > d {{}} }}\n```\n\n{}\n```\nunclosed {reserved}\n{}",
        "😀".repeat(2600),
        "line of text\n".repeat(400)
    );
    let chunks = render(&source, MAX_MESSAGE_UNITS);
    assert!(chunks.len() >= 3);
    let pacer = ChatPacer::new(ChatKind::Private, PacerConfig::default());
    for chunk in &chunks {
        assert!(parse_html(&chunk.html).is_ok(), "{}", chunk.html);
        assert_eq!(pacer.acquire(true).await, Permit::Go);
        bot.send_message(ChatId(9), &chunk.html)
            .parse_mode(ParseMode::Html)
            .await
            .unwrap();
    }
    assert_eq!(fake.messages(9).len(), chunks.len());
    assert!(
        fake.errors(429).is_empty(),
        "the pacer kept within the flood limit"
    );
    assert!(fake.errors(400).is_empty());
}

#[tokio::test]
async fn the_command_menu_follows_telegrams_rules() {
    use teloxide::types::BotCommand;
    let fake = FakeTelegram::start().await;
    let bot = bot(&fake);
    for (name, description, expected) in [
        ("Help", "What I can do", "BOT_COMMAND_INVALID"),
        ("new-chat", "Start over", "BOT_COMMAND_INVALID"),
        ("help", "", "BOT_COMMAND_DESCRIPTION_INVALID"),
    ] {
        let error = bot
            .set_my_commands([BotCommand::new(name, description)])
            .await
            .unwrap_err();
        assert!(error.to_string().contains(expected), "{name}: {error}");
    }
    assert!(fake.commands().is_empty());
    let menu = valor_telegram::channel::COMMANDS
        .iter()
        .map(|(name, what)| BotCommand::new(*name, *what));
    bot.set_my_commands(menu).await.unwrap();
    assert_eq!(
        fake.commands().len(),
        valor_telegram::channel::COMMANDS.len()
    );
}
