//! Session state writes survive a lost acknowledgement. A plain write
//! retried with the same write id is stored once; a compare-and-set whose
//! acknowledgement was lost is found among the key's later messages, so the
//! writer neither reports a false conflict (and applies its change twice)
//! nor a false success. This is what lets tools' state writes be retried
//! through a NATS leader election.

use anyhow::Result;
use async_nats::jetstream::{self, kv};
use jetway_shared::kv_write::{self, Expect, HISTORY, WriteError};
use jetway_tests::NatsServer;

async fn bucket(nats: &NatsServer, history: i64) -> Result<(jetstream::Context, kv::Store)> {
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let store = js
        .create_key_value(kv::Config {
            bucket: "state_test".into(),
            history,
            ..Default::default()
        })
        .await?;
    Ok((js, store))
}

#[tokio::test]
async fn a_retried_plain_write_is_stored_once() -> Result<()> {
    let nats = NatsServer::start().await?;
    let (js, store) = bucket(&nats, HISTORY).await?;

    let first = kv_write::write(&js, &store, "k", "1".into(), Expect::Any, "w1").await?;
    let again = kv_write::write(&js, &store, "k", "1".into(), Expect::Any, "w1").await?;
    assert_eq!(
        again, first,
        "the retry is acknowledged with the first revision"
    );
    let info = store.stream.get_info().await?;
    assert_eq!(info.state.messages, 1, "one message stored, not two");
    Ok(())
}

#[tokio::test]
async fn a_compare_and_set_that_landed_is_found_after_later_writes() -> Result<()> {
    let nats = NatsServer::start().await?;
    let (js, store) = bucket(&nats, HISTORY).await?;

    let mine = kv_write::write(&js, &store, "k", "1".into(), Expect::Revision(0), "mine").await?;
    // Its acknowledgement was "lost", and someone else wrote on top since.
    let theirs = kv_write::write(
        &js,
        &store,
        "k",
        "2".into(),
        Expect::Revision(mine),
        "theirs",
    )
    .await?;
    // A plain retry now fails the revision check...
    let retry = kv_write::write(&js, &store, "k", "1".into(), Expect::Revision(0), "mine").await;
    assert!(matches!(retry, Err(WriteError::Conflict)), "{retry:?}");
    // ...which is why the writer looks for its message id.
    assert_eq!(kv_write::landed(&store, "k", 0, "mine").await?, mine);
    assert_eq!(kv_write::landed(&store, "k", mine, "theirs").await?, theirs);
    // A compare-and-set that never landed is a conflict: re-read and retry.
    let never = kv_write::landed(&store, "k", mine, "never-sent").await;
    assert!(matches!(never, Err(WriteError::Conflict)), "{never:?}");
    assert_eq!(
        kv_write::get(&store, "k").await?.as_deref(),
        Some(b"2".as_ref())
    );
    Ok(())
}

#[tokio::test]
async fn an_outcome_pushed_out_of_history_is_unknown_not_guessed() -> Result<()> {
    let nats = NatsServer::start().await?;
    let (js, store) = bucket(&nats, 2).await?;

    let mut rev = kv_write::write(&js, &store, "k", "0".into(), Expect::Revision(0), "w0").await?;
    let start = rev;
    for i in 1..=3 {
        let id = format!("w{i}");
        rev = kv_write::write(
            &js,
            &store,
            "k",
            i.to_string().into(),
            Expect::Revision(rev),
            &id,
        )
        .await?;
    }
    // "w1" landed right after `start`, but history 2 dropped it.
    let gone = kv_write::landed(&store, "k", start, "w1").await;
    assert!(matches!(gone, Err(WriteError::Unknown)), "{gone:?}");
    Ok(())
}
