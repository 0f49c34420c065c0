//! Watch streams: resume from the last revision exactly once and in order; a consumer
//! too far behind gets a snapshot first.

mod support;

use std::time::Duration;

use causeway_registry::{CatalogEvent, Command, Revision};
use futures::StreamExt as _;
use support::*;

async fn next_event<S>(stream: &mut S) -> anyhow::Result<CatalogEvent>
where
    S: futures::Stream<Item = Result<CatalogEvent, causeway_registry::ClientError>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(event)) => Ok(event?),
        Ok(None) => anyhow::bail!("watch stream ended"),
        Err(_) => anyhow::bail!("no watch event within 10 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_watch_sees_every_change_once_in_order() -> anyhow::Result<()> {
    let reg = TestRegistry::start(3, |_| {}).await?;
    let all = reg.running();
    reg.leader(&all, Duration::from_secs(10)).await?;
    let writer = reg.client(1);
    let first = propose_retrying(
        &writer,
        &Command::RegisterCluster(cluster("west")),
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(first, 1);

    let mut stream = Box::pin(reg.client(2).watch(Revision::ZERO).await?);
    for i in 0..10u32 {
        writer
            .propose(&Command::PutExport(export(
                "west",
                &format!("shop/a{i}"),
                i,
            )))
            .await?;
    }
    let mut seen = Vec::new();
    while seen.last().copied() != Some(11) {
        match next_event(&mut stream).await? {
            CatalogEvent::Change(c) => seen.push(c.revision.0),
            CatalogEvent::Snapshot(s) => anyhow::bail!("unexpected snapshot at {}", s.revision),
        }
    }
    assert_eq!(seen, (1..=11).collect::<Vec<_>>());
    drop(stream);

    // Changes made while disconnected arrive after reconnecting (to another member).
    for i in 0..10u32 {
        writer
            .propose(&Command::PutExport(export(
                "west",
                &format!("shop/b{i}"),
                i,
            )))
            .await?;
    }
    let mut stream = Box::pin(reg.client(3).watch(Revision(11)).await?);
    let mut resumed = Vec::new();
    while resumed.len() < 10 {
        match next_event(&mut stream).await? {
            CatalogEvent::Change(c) => {
                assert_eq!(c.changes.len(), 1);
                resumed.push(c.revision.0);
            }
            CatalogEvent::Snapshot(s) => anyhow::bail!("unexpected snapshot at {}", s.revision),
        }
    }
    assert_eq!(resumed, (12..=21).collect::<Vec<_>>());
    // And the stream continues live.
    writer
        .propose(&Command::DeleteExport {
            cluster: "west".parse()?,
            service: "shop/a0".parse()?,
        })
        .await?;
    match next_event(&mut stream).await? {
        CatalogEvent::Change(c) => assert_eq!(c.revision.0, 22),
        other => anyhow::bail!("unexpected {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_too_far_behind_starts_with_a_snapshot() -> anyhow::Result<()> {
    let reg = TestRegistry::start(3, |c| c.watch_history = 5).await?;
    let all = reg.running();
    reg.leader(&all, Duration::from_secs(10)).await?;
    let writer = reg.client(1);
    propose_retrying(
        &writer,
        &Command::RegisterCluster(cluster("west")),
        Duration::from_secs(5),
    )
    .await?;
    let mut last = 0;
    for i in 0..20u32 {
        last = writer
            .propose(&Command::PutExport(export(
                "west",
                &format!("shop/s{i}"),
                i,
            )))
            .await?
            .0;
    }
    reg.converged(&all, last, Duration::from_secs(5)).await?;
    let mut stream = Box::pin(reg.client(2).watch(Revision(2)).await?);
    match next_event(&mut stream).await? {
        CatalogEvent::Snapshot(s) => {
            assert_eq!(s.revision.0, last);
            assert_eq!(s.exports.len(), 20);
            assert_eq!(s.clusters.len(), 1);
        }
        other => anyhow::bail!("expected a snapshot first, got {other:?}"),
    }
    writer
        .propose(&Command::PutExport(export("west", "shop/late", 1)))
        .await?;
    match next_event(&mut stream).await? {
        CatalogEvent::Change(c) => assert_eq!(c.revision.0, last + 1),
        other => anyhow::bail!("unexpected {other:?}"),
    }
    // A consumer within the history gets plain changes.
    let mut recent = Box::pin(reg.client(3).watch(Revision(last - 2)).await?);
    for expected in last - 1..=last + 1 {
        match next_event(&mut recent).await? {
            CatalogEvent::Change(c) => assert_eq!(c.revision.0, expected),
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }
    Ok(())
}
