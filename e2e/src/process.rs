//! `causeway` processes inside namespaces: started, killed with SIGKILL, restarted.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use anyhow::{Context, Result};

use crate::netns::{Namespace, sh};

/// One long-running `causeway` process in a namespace, with its log on disk.
#[derive(Debug)]
pub struct GatewayProcess {
    ns: Namespace,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl GatewayProcess {
    /// Starts `causeway <args>` in `ns`, logging to `log` (appended across restarts).
    pub fn start(ns: &Namespace, args: &[&str], log: &Path) -> Result<Self> {
        let mut p = Self {
            ns: ns.clone(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            log: log.to_owned(),
            child: None,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let child = self
            .ns
            .command(&crate::causeway_bin())
            .args(&self.args)
            // `CAUSEWAY_E2E_LOG` (a `RUST_LOG` filter) makes a failing run say more.
            .env(
                "RUST_LOG",
                std::env::var("CAUSEWAY_E2E_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning causeway")?;
        self.child = Some(child);
        Ok(())
    }

    /// The process id (`ip netns exec` execs the program, so it is causeway's).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it was started and has not been killed.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, as a crash would, then reaps it.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            sh("kill", &["-9", &child.id().to_string()])?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM (graceful drain), then waits for it to exit.
    pub fn terminate(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            sh("kill", &["-TERM", &child.id().to_string()])?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts it again with the same arguments.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9()?;
        self.spawn()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
