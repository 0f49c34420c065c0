//! A writer that exports services through the CLI, one after another, while a test
//! injects faults: it records when each write started, how long it took, and
//! whether the gateway acknowledged it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::cluster::cli_in;
use crate::netns::Namespace;

/// Most writes of one run, so that a wait that never ends cannot fill the
/// federation's import pools.
const MAX_WRITES: usize = 200;

/// One `causeway export demo/<name>`.
#[derive(Debug, Clone)]
pub struct Write {
    /// The exported service's name.
    pub name: String,
    /// When the command started.
    pub start: Instant,
    /// How long it took to answer.
    pub took: Duration,
    /// Whether it was acknowledged (exit status 0).
    pub ok: bool,
}

/// Exports `demo/w0`, `demo/w1`, … through the CLI until stopped; see the module.
#[derive(Debug, Default)]
pub struct Writer {
    writes: Mutex<Vec<Write>>,
    stopped: AtomicBool,
    done: AtomicBool,
    changed: Condvar,
}

impl Writer {
    /// Writes through the gateway of namespace `ns` until [`Writer::stop`]; run it
    /// on a thread of its own.
    pub fn run(&self, ns: &Namespace) {
        for i in 0..MAX_WRITES {
            if self.stopped.load(Ordering::SeqCst) {
                break;
            }
            let name = format!("w{i}");
            let service = format!("demo/{name}");
            let start = Instant::now();
            let args = [
                "export",
                &service,
                "--port",
                "9000:18080/http",
                "--endpoint",
                "127.0.0.1",
            ];
            let ok = cli_in(ns, &args).is_ok_and(|(ok, _)| ok);
            let took = start.elapsed();
            self.writes.lock().expect("writes lock").push(Write {
                name,
                start,
                took,
                ok,
            });
            self.changed.notify_all();
        }
        self.done.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// Waits until `count` writes were acknowledged.
    pub fn wait_acknowledged(&self, count: usize, timeout: Duration) -> Result<()> {
        self.wait_acknowledged_after(None, count, timeout)
    }

    /// Waits until `count` writes that started after `since` were acknowledged.
    pub fn wait_acknowledged_since(
        &self,
        since: Instant,
        count: usize,
        timeout: Duration,
    ) -> Result<()> {
        self.wait_acknowledged_after(Some(since), count, timeout)
    }

    fn wait_acknowledged_after(
        &self,
        since: Option<Instant>,
        count: usize,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut writes = self.writes.lock().expect("writes lock");
        loop {
            let seen = writes
                .iter()
                .filter(|w| w.ok && since.is_none_or(|s| w.start >= s))
                .count();
            if seen >= count {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline || self.done.load(Ordering::SeqCst) {
                let last = writes.last().map(|w| (&w.name, w.ok));
                bail!("{count} acknowledged writes: {seen} within {timeout:?} (last: {last:?})");
            }
            writes = self
                .changed
                .wait_timeout(writes, deadline - now)
                .expect("writes lock")
                .0;
        }
    }

    /// Asks the writer to stop after the write in flight.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Every write made, in order (after the writer's thread ended).
    pub fn finished(&self) -> Vec<Write> {
        self.writes.lock().expect("writes lock").clone()
    }
}
