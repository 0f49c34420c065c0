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

/// What a load's threads share: its clock, its stop flag and its samples.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    /// When the load started; [`Sample`] times are relative to this.
    pub(crate) t0: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Self {
            t0: Instant::now(),
            stop: Arc::default(),
            samples: Arc::default(),
        }
    }

    /// Whether the load was told to stop.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, sample: Sample) {
        self.samples.lock().expect("samples lock").push(sample);
    }

    /// Where the load is now, on its own clock.
    pub(crate) fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// The samples so far, by start.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        let mut all = self.samples.lock().expect("samples lock").clone();
        all.sort_by_key(|s| s.start);
        all
    }

    /// Stops the load's threads and returns every sample, by start.
    pub(crate) fn finish(&self, threads: Vec<JoinHandle<()>>) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        self.samples()
    }
}

/// Sends one HTTP GET after another (each on a new connection) from a namespace until
/// stopped.
#[derive(Debug)]
pub struct Client {
    recorder: Recorder,
    handle: JoinHandle<()>,
}

impl Client {
    /// Starts requesting `url` from `ns`, each request given at most `timeout`.
    pub fn start(ns: &Namespace, url: &str, timeout: Duration) -> Self {
        let recorder = Recorder::new();
        let (ns, url, rec) = (ns.clone(), url.to_owned(), recorder.clone());
        let max_time = format!("{:.1}", timeout.as_secs_f64());
        let handle = std::thread::spawn(move || {
            while !rec.stopping() {
                let start = rec.now();
                let out = ns.exec("curl", &["-sSf", "--max-time", &max_time, &url]);
                let end = rec.now();
                let (ok, body) = match out {
                    Ok(body) => (true, body),
                    Err(e) => (false, format!("{e:#}")),
                };
                rec.record(Sample {
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
        Self { recorder, handle }
    }

    /// Where the client is now, on its own clock.
    pub fn now(&self) -> Duration {
        self.recorder.now()
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.recorder.samples()
    }

    /// Stops after the request in flight and returns every sample.
    pub fn stop(self) -> Vec<Sample> {
        self.recorder.finish(vec![self.handle])
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
