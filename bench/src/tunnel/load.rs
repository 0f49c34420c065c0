//! The in-process servers every path ends at (a sink and a 1 KiB echo) and the
//! blocking load generator that drives them: throughput and round-trip latency.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use super::{CHUNK, Latency, MESSAGE};

/// A server on `bind` that reads and drops whatever arrives; where it listens.
pub(crate) fn start_sink(bind: SocketAddr) -> Result<SocketAddr> {
    let listener = TcpListener::bind(bind).with_context(|| format!("bind {bind}"))?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            thread::spawn(move || {
                let mut buf = vec![0u8; CHUNK];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    Ok(addr)
}

/// A server that sends back every 1 KiB message.
pub(super) fn start_echo() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let _ = s.set_nodelay(true);
            thread::spawn(move || {
                let mut buf = [0u8; MESSAGE];
                while s.read_exact(&mut buf).is_ok() {
                    if s.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Writes as fast as possible on `streams` connections for `duration`; Gbit/s
/// over all of them. The connections are opened `open_gap` apart (zero: back to
/// back); the first second after the last is warm-up and not counted.
pub(crate) fn throughput(
    addr: SocketAddr,
    streams: usize,
    open_gap: Duration,
    duration: Duration,
) -> Result<f64> {
    let counted = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for n in 0..streams {
        if n > 0 {
            thread::sleep(open_gap);
        }
        let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        let (counted, counting, stop) = (counted.clone(), counting.clone(), stop.clone());
        writers.push(thread::spawn(move || -> Result<()> {
            let buf = vec![0x5a_u8; CHUNK];
            while !stop.load(Ordering::Relaxed) {
                s.write_all(&buf).context("write")?;
                if counting.load(Ordering::Relaxed) {
                    counted.fetch_add(CHUNK as u64, Ordering::Relaxed);
                }
            }
            Ok(())
        }));
    }
    thread::sleep(Duration::from_secs(1));
    counting.store(true, Ordering::SeqCst);
    let start = Instant::now();
    thread::sleep(duration);
    let bytes = counted.load(Ordering::SeqCst);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    Ok(bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9)
}

/// 1 KiB request/response on one connection, paced at `rate` per second or back
/// to back; RTT percentiles in µs.
pub(super) fn latency(addr: SocketAddr, rate: Option<u32>, duration: Duration) -> Result<Latency> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    let req = [0x42_u8; MESSAGE];
    let mut resp = [0u8; MESSAGE];
    // Warm-up: the first requests pay for lazy connection set-up.
    for _ in 0..200 {
        s.write_all(&req)?;
        s.read_exact(&mut resp)?;
    }
    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
    let mut samples = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    let mut next = start;
    while start.elapsed() < duration {
        if let Some(i) = interval {
            next += i;
            let now = Instant::now();
            if next > now {
                thread::sleep(next - now);
            }
        }
        let t = Instant::now();
        s.write_all(&req)?;
        s.read_exact(&mut resp)?;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    ensure!(!samples.is_empty(), "no samples");
    let rate = samples.len() as f64 / start.elapsed().as_secs_f64();
    samples.sort_unstable();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i] as f64 / 1000.0
    };
    Ok(Latency {
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        rate,
    })
}
