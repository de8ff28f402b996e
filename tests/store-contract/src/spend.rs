//! Spend counters: added to by many writers at once without a lost update, read in order,
//! raised, a notice marked sent once, listed by period.

use std::sync::Arc;

use valor_core::budget::SpendLog;
use valor_protocol::budget::Spent;

pub async fn spend_log_contract(log: Arc<dyn SpendLog>) {
    let (chat, user) = (
        "day:2026-12-08:chat:42".to_owned(),
        "day:2026-12-08:user:7".to_owned(),
    );
    let unknown = "day:2026-12-08:chat:999".to_owned();
    assert_eq!(
        log.spent(std::slice::from_ref(&chat)).await.unwrap(),
        [Spent::default()]
    );

    // 40 runs at once, two counters each: every one counts.
    let runs = (0..40).map(|_| {
        let (log, counters) = (Arc::clone(&log), vec![chat.clone(), user.clone()]);
        tokio::spawn(async move { log.add_spend(&counters, 0.25, 1_000).await.unwrap() })
    });
    for run in runs {
        run.await.unwrap();
    }
    let read = log
        .spent(&[user.clone(), unknown.clone(), chat.clone()])
        .await
        .unwrap();
    assert!((read[0].usd - 10.0).abs() < 1e-9, "{read:?}");
    assert_eq!((read[0].tokens, read[2].tokens), (40_000, 40_000));
    assert_eq!(read[1], Spent::default());

    // Allowing more adds to the cap's allowance, not to the spend.
    let raised = log.allow_more(&chat, 1.5, 0).await.unwrap();
    let raised_again = log.allow_more(&chat, 1.5, 100).await.unwrap();
    assert!((raised.allowed_usd - 1.5).abs() < 1e-9);
    assert!((raised_again.allowed_usd - 3.0).abs() < 1e-9);
    assert_eq!(raised_again.allowed_tokens, 100);
    assert!((raised_again.usd - 10.0).abs() < 1e-9);

    // Each notice once, the warning and the spent one apart.
    assert!(log.mark_told(&chat, false).await.unwrap());
    assert!(!log.mark_told(&chat, false).await.unwrap());
    assert!(log.mark_told(&chat, true).await.unwrap());
    assert!(!log.mark_told(&chat, true).await.unwrap());
    assert!(log.mark_told(&unknown, true).await.unwrap());
    let flags = log.spent(std::slice::from_ref(&chat)).await.unwrap()[0];
    assert!(flags.warned && flags.stopped);

    // Listed by period; a pattern character in the prefix is only itself.
    log.add_spend(&["month:2026-12:global".to_owned()], 1.0, 1)
        .await
        .unwrap();
    let day: Vec<String> = (log.spend_with_prefix("day:2026-12-08:").await.unwrap())
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(day, [chat.clone(), unknown, user]);
    assert!(log.spend_with_prefix("day:%").await.unwrap().is_empty());
    assert_eq!(log.spend_with_prefix("month:").await.unwrap().len(), 1);
}
