//! Steady load of new connections from inside a namespace: each request is an HTTP
//! GET on a new TCP connection, at a fixed rate, from threads that entered the
//! namespace (`setns`), so hundreds of connections a second cost no process each.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sched::{CloneFlags, setns};

use crate::client::{Recorder, Sample};
use crate::netns::Namespace;

/// Most bytes of an answer kept: the echo service answers a few dozen.
const MAX_ANSWER: u64 = 4096;

/// New connections at a steady rate from a namespace until stopped.
#[derive(Debug)]
pub struct Load {
    recorder: Recorder,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `rate` requests a second to `addr` from `ns`, over `threads` threads
    /// (each one request at a time), each request given at most `timeout`.
    pub fn start(
        ns: &Namespace,
        addr: SocketAddr,
        rate: u32,
        threads: u32,
        timeout: Duration,
    ) -> Result<Self> {
        let recorder = Recorder::new();
        let interval = Duration::from_secs(threads.into()) / rate.max(1);
        let path = format!("/var/run/netns/{}", ns.name);
        let mut handles = Vec::new();
        for n in 0..threads {
            let netns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
            let rec = recorder.clone();
            // Threads start spread over one interval, so requests are evenly spaced.
            let mut next = rec.t0 + interval * n / threads;
            handles.push(std::thread::spawn(move || {
                setns(&netns, CloneFlags::CLONE_NEWNET).expect("entering the namespace");
                while !rec.stopping() {
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    next += interval;
                    rec.record(request(rec.t0, addr, timeout));
                }
            }));
        }
        Ok(Self {
            recorder,
            threads: handles,
        })
    }

    /// Where the load is now, on its own clock.
    pub fn now(&self) -> Duration {
        self.recorder.now()
    }

    /// The samples so far, by start.
    pub fn samples(&self) -> Vec<Sample> {
        self.recorder.samples()
    }

    /// Stops after the requests in flight and returns every sample, by start.
    pub fn stop(self) -> Vec<Sample> {
        self.recorder.finish(self.threads)
    }
}

/// One GET on a new connection: ok on a 200, with the body (or the error).
fn request(t0: Instant, addr: SocketAddr, timeout: Duration) -> Sample {
    let start = t0.elapsed();
    let deadline = Instant::now() + timeout;
    // The client port names the connection in the importing gateway's log.
    let mut port = None;
    let outcome = (|| -> std::io::Result<String> {
        let mut tcp = TcpStream::connect_timeout(&addr, timeout)?;
        port = tcp.local_addr().ok().map(|a| a.port());
        let left = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        tcp.set_write_timeout(Some(left()))?;
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n")?;
        tcp.set_read_timeout(Some(left()))?;
        let mut answer = String::new();
        tcp.take(MAX_ANSWER).read_to_string(&mut answer)?;
        Ok(answer)
    })();
    let end = t0.elapsed();
    let (ok, body) = match outcome {
        Ok(answer) => {
            let ok = answer.starts_with("HTTP/1.1 200");
            let body = answer.split("\r\n\r\n").nth(1).unwrap_or(&answer);
            (ok, body.trim().to_owned())
        }
        Err(e) => match port {
            Some(port) => (false, format!("{e} (client port {port})")),
            None => (false, e.to_string()),
        },
    };
    Sample {
        start,
        end,
        ok,
        body,
    }
}
