//! Exports made at run time (`causeway export`, the admin API) are the cluster's:
//! its catalog record lists them, and the data folder keeps a copy. They survive a
//! crash and a restart, and a reload of the config file changes only what the
//! file's own entries changed. The file's exports win. (Several replicas sharing
//! them: `e2e/tests/replicas.rs`.)

use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use causeway_gateway::admin::AdminApi;
use causeway_gateway::config::{ExportConfig, PortConfig};
use causeway_gateway::daemon::Gateway;
use causeway_gateway::federation::{ECHO_NAMESPACE, ECHO_SERVICE, LocalFederation};
use causeway_gateway::status::ExportSource;
use causeway_testing::eventually;

const CONVERGE: Duration = Duration::from_secs(30);

/// `demo/extra`, served by west's echo service.
fn extra(fed: &LocalFederation) -> ExportConfig {
    let echo = fed.members[0].echo;
    ExportConfig {
        namespace: ECHO_NAMESPACE.into(),
        name: "extra".into(),
        ports: vec![PortConfig {
            name: None,
            port: 9000,
            target_port: Some(u64::from(echo.port())),
            protocol: "tcp".into(),
        }],
        endpoints: vec![echo.ip()],
        weight: 100,
        labels: Default::default(),
    }
}

/// West's exports with their sources, by name.
fn sources(gateway: &Gateway) -> Vec<(String, ExportSource)> {
    let mut all: Vec<(String, ExportSource)> = gateway
        .api()
        .status()
        .exports
        .into_iter()
        .map(|e| (e.name, e.source))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Waits until east sees west's `demo/<name>` in the catalog (or, with `present`
/// false, no longer does). East hides it from its imports, since the demo's
/// access policy lets east reach only the echo service; it says so in status.
async fn east_imports(fed: &LocalFederation, name: &str, present: bool) -> Result<()> {
    let what = format!("east seeing {name}: {present}");
    eventually(CONVERGE, &what, || {
        let status = fed.gateway(1).expect("east runs").api().status();
        let found = status.imports.iter().any(|i| i.name == name)
            || status.access.hidden_imports.iter().any(|h| h.name == name);
        std::future::ready((found == present).then_some(()))
    })
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_exports_survive_a_crash_and_a_reload_and_the_file_wins() -> Result<()> {
    let mut fed = LocalFederation::start(&["west", "east"]).await?;
    fed.wait_converged(CONVERGE).await?;
    let api = fed.gateway(0)?.api();
    api.put_export(extra(&fed))
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    drop(api);
    let both = vec![
        ("echo".to_owned(), ExportSource::File),
        ("extra".to_owned(), ExportSource::Cli),
    ];
    ensure!(sources(fed.gateway(0)?) == both);
    east_imports(&fed, "extra", true).await?;

    // A crash: the gateway is gone without a word, then starts from its files.
    fed.kill(0).await;
    fed.restart(0).await?;
    ensure!(sources(fed.gateway(0)?) == both, "after the restart");

    // The file's exports win: neither replaced nor withdrawn from the command line.
    // (An API handle keeps the gateway's sockets open: each is dropped before a
    // kill.)
    let api = fed.gateway(0)?.api();
    let mut echo = extra(&fed);
    echo.name = ECHO_SERVICE.into();
    let refused = api.put_export(echo).await.unwrap_err();
    ensure!(refused.message.contains("config file"), "{refused:?}");
    let refused = api
        .delete_export(ECHO_NAMESPACE.into(), ECHO_SERVICE.into())
        .await
        .unwrap_err();
    ensure!(refused.message.contains("config file"), "{refused:?}");
    drop(api);

    // Run west from a config file: a comment changes nothing, and dropping the
    // file's export leaves the runtime one.
    let file = fed.dir().join("west.toml");
    let config = fed.members[0].config.clone();
    let text = toml::to_string(&config)?;
    std::fs::write(&file, &text)?;
    fed.kill(0).await;
    fed.members[0].gateway = Some(Gateway::start(config.clone(), Some(file.clone())).await?);
    std::fs::write(&file, format!("# a comment\n{text}"))?;
    fed.gateway(0)?.reload()?;
    ensure!(sources(fed.gateway(0)?) == both, "after a comment");
    let mut without_echo = config;
    without_echo.exports.clear();
    std::fs::write(&file, toml::to_string(&without_echo)?)?;
    fed.gateway(0)?.reload()?;
    ensure!(sources(fed.gateway(0)?) == [("extra".to_owned(), ExportSource::Cli)]);

    // Withdrawn at run time: gone for good, across a restart too.
    let api = fed.gateway(0)?.api();
    api.delete_export(ECHO_NAMESPACE.into(), "extra".into())
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    drop(api);
    east_imports(&fed, "extra", false).await?;
    fed.kill(0).await;
    fed.restart(0).await?;
    // The restart reads the file as first written: its echo export is back.
    ensure!(sources(fed.gateway(0)?) == [("echo".to_owned(), ExportSource::File)]);
    fed.shutdown().await;
    Ok(())
}

/// A gateway from before runtime exports were the cluster's kept them in its data
/// folder only. Its cluster's record lists none, so it puts them there on start;
/// from then on the record has them, even when the folder's copy is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_runtime_exports_seed_a_record_that_never_listed_any() -> Result<()> {
    let mut fed = LocalFederation::start(&["west", "east"]).await?;
    fed.wait_converged(CONVERGE).await?;
    fed.kill(0).await;
    let copy = fed.members[0]
        .config
        .registry
        .data_dir
        .join("runtime-exports.json");
    std::fs::write(&copy, serde_json::to_vec(&vec![extra(&fed)])?)?;
    fed.restart(0).await?;
    // West registers, seeds the record, then publishes: east seeing the export
    // means the record has it.
    east_imports(&fed, "extra", true).await?;

    fed.kill(0).await;
    std::fs::remove_file(&copy)?;
    fed.restart(0).await?;
    let cli = ("extra".to_owned(), ExportSource::Cli);
    eventually(CONVERGE, "west serves the record's runtime export", || {
        let served = fed.gateway(0).is_ok_and(|g| sources(g).contains(&cli));
        std::future::ready(served.then_some(()))
    })
    .await?;
    ensure!(copy.exists(), "the copy is saved again");
    fed.shutdown().await;
    Ok(())
}
