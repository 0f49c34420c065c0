//! `causeway export` and `causeway unexport`: a service offered to the federation by
//! this gateway, or withdrawn.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cli::admin_client::{AdminClient, AdminTarget};
use crate::config::{ExportConfig, PortConfig};

/// Arguments of `causeway export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// The service as `namespace/name`.
    service: String,
    /// Ports as `port[:target_port][/name]`, e.g. `80:8080/http`.
    #[arg(long = "port", required = true)]
    ports: Vec<String>,
    /// Endpoint IP addresses.
    #[arg(long = "endpoint", required = true)]
    endpoints: Vec<std::net::IpAddr>,
    /// Weight relative to other exporting clusters.
    #[arg(long, default_value_t = 100)]
    weight: u32,
}

/// `namespace/name` split in two; both parts must be non-empty.
pub(super) fn split_service(service: &str) -> Result<(String, String)> {
    match service.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok((ns.into(), name.into())),
        _ => bail!("{service:?} is not namespace/name"),
    }
}

/// A port spec `port[:target_port][/name]`; the numbers' range is checked with
/// the rest of the export.
pub(super) fn parse_port(spec: &str) -> Result<PortConfig> {
    let (numbers, name) = match spec.split_once('/') {
        Some((n, name)) => (n, Some(name.to_owned())),
        None => (spec, None),
    };
    let (port, target) = match numbers.split_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (numbers, None),
    };
    let num = |s: &str| {
        s.parse::<u64>()
            .with_context(|| format!("{spec:?}: {s:?} is not a number"))
    };
    Ok(PortConfig {
        name,
        port: num(port)?,
        target_port: target.map(num).transpose()?,
        protocol: "tcp".into(),
    })
}

/// Runs `causeway export`.
pub async fn export(a: ExportArgs) -> Result<ExitCode> {
    let (namespace, name) = split_service(&a.service)?;
    let export = ExportConfig {
        namespace,
        name,
        ports: a
            .ports
            .iter()
            .map(|p| parse_port(p))
            .collect::<Result<_>>()?,
        endpoints: a.endpoints.clone(),
        weight: a.weight,
        labels: Default::default(),
    };
    let problems: Vec<String> = export
        .validate()
        .iter()
        .map(|p| format!("{}: {}", typed(&p.path, &a), p.message))
        .collect();
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    let message = AdminClient::new(a.target.admin).export(&export).await?;
    println!("✓ {message}");
    Ok(ExitCode::SUCCESS)
}

/// The flag and value the user typed for the export field at `path` (as
/// `ExportConfig::validate` names it), so an error points at the command line,
/// not at a config file.
fn typed(path: &str, a: &ExportArgs) -> String {
    let field = path.split(['.', '[']).next().unwrap_or(path);
    match field {
        "namespace" | "name" => format!("SERVICE {:?}", a.service),
        "ports" => {
            let index = path
                .strip_prefix("ports[")
                .and_then(|rest| rest.split(']').next())
                .and_then(|i| i.parse::<usize>().ok());
            match index.and_then(|i| a.ports.get(i)) {
                Some(spec) => format!("--port {spec:?}"),
                None => "--port".to_owned(),
            }
        }
        "endpoints" => "--endpoint".to_owned(),
        "weight" => format!("--weight {}", a.weight),
        _ => path.to_owned(),
    }
}

/// Arguments of `causeway unexport`.
#[derive(Debug, Args)]
pub struct UnexportArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// The service as `namespace/name`.
    service: String,
}

/// Runs `causeway unexport`.
pub async fn unexport(a: UnexportArgs) -> Result<ExitCode> {
    let (namespace, name) = split_service(&a.service)?;
    let message = AdminClient::new(a.target.admin)
        .unexport(&namespace, &name)
        .await?;
    println!("✓ {message}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        export: ExportArgs,
    }

    fn args(line: &[&str]) -> ExportArgs {
        let mut all = vec!["causeway"];
        all.extend_from_slice(line);
        Cli::parse_from(all).export
    }

    #[tokio::test]
    async fn errors_name_the_flag_and_the_value_typed() {
        let cases: [(&[&str], &str); 4] = [
            (
                &[
                    "demo/web",
                    "--port",
                    "80",
                    "--port",
                    "70000:8080/http",
                    "--endpoint",
                    "127.0.0.1",
                ],
                "--port \"70000:8080/http\": 70000 is not a port",
            ),
            (
                &["Demo/web", "--port", "80", "--endpoint", "127.0.0.1"],
                "SERVICE \"Demo/web\": ",
            ),
            (
                &[
                    "demo/web",
                    "--port",
                    "80",
                    "--endpoint",
                    "127.0.0.1",
                    "--weight",
                    "0",
                ],
                "--weight 0: 0 is not in 1..=10000",
            ),
            (
                &["demo/web", "--port", "80:0", "--endpoint", "127.0.0.1"],
                "--port \"80:0\": 0 is not a port",
            ),
        ];
        for (line, expected) in cases {
            let err = export(args(line)).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{line:?}: {err}");
            assert!(!err.contains("export["), "{line:?}: {err}");
        }
    }
}
