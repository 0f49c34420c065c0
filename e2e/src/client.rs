//! A client that keeps sending requests from inside a namespace while faults are
//! injected, recording when each one started and ended and what it got.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::Namespace;

/// One request of a [`Client`].
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it started, from the client's start.
    pub start: Duration,
    /// When it ended, from the client's start.
    pub end: Duration,
    /// Whether it got a 2xx answer.
    pub ok: bool,
    /// The body, or curl's error.
    pub body: String,
}

/// Sends one HTTP GET after another (each on a new connection) from a namespace until
/// stopped.
#[derive(Debug)]
pub struct Client {
    /// When it started; [`Sample`] times are relative to this.
    pub t0: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    handle: JoinHandle<()>,
}

impl Client {
    /// Starts requesting `url` from `ns`, each request given at most `timeout`.
    pub fn start(ns: &Namespace, url: &str, timeout: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (ns, url, flag, sink) = (ns.clone(), url.to_owned(), stop.clone(), samples.clone());
        let max_time = format!("{:.1}", timeout.as_secs_f64());
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let start = t0.elapsed();
                let out = ns.exec("curl", &["-sSf", "--max-time", &max_time, &url]);
                let end = t0.elapsed();
                let (ok, body) = match out {
                    Ok(body) => (true, body),
                    Err(e) => (false, format!("{e:#}")),
                };
                sink.lock().expect("samples lock").push(Sample {
                    start,
                    end,
                    ok,
                    body,
                });
                if !ok {
                    // A refused connection fails at once; do not spin.
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Self {
            t0,
            stop,
            samples,
            handle,
        }
    }

    /// Where the client is now, on its own clock.
    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples lock").clone()
    }

    /// Stops after the request in flight and returns every sample.
    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        self.samples.lock().expect("samples lock").clone()
    }
}

/// The `p`-th percentile (0–100, nearest rank) of `values`; zero when empty.
pub fn percentile(values: &[Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_uses_the_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let values = [ms(40), ms(10), ms(30), ms(20)];
        assert_eq!(percentile(&values, 50.0), ms(20));
        assert_eq!(percentile(&values, 100.0), ms(40));
        assert_eq!(percentile(&values, 0.0), ms(10));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
