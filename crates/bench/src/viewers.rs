//! `firehose` (many viewers of one fast action, against the same action unwatched) and `join`
//! (a viewer joins a finished log, against reading the same bytes from a local file).

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::floor;
use super::harness::{self, BenchServer, ServerOptions, mib, quote};
use super::http::{OutputEvent, OutputParser, RawStream};
use super::{Ctx, Run, stats};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;
/// Read size of the bench's viewers and of its local-file reader.
pub const READ: usize = 256 * 1024;

/// What a counting viewer saw.
struct Counted {
    /// Records arrived with `seq` 1, 2, 3, … and contiguous stdout offsets.
    contiguous: bool,
    bytes: u64,
    eof: bool,
    wire_bytes: u64,
    finished: Instant,
}

/// Reads an SSE output stream to its end, checking every record's `seq` and `offset` and
/// counting the decoded bytes (no copy of the data).
async fn view_bytes(mut stream: RawStream) -> Result<Counted> {
    let mut parser = OutputParser::new(false);
    let (mut next_seq, mut next_offset, mut contiguous, mut eof) = (1u64, 0u64, true, false);
    stream
        .read_to_end(&mut |bytes| {
            parser.feed(bytes, &mut |e| match e {
                OutputEvent::Record { seq, offset, stdout, len, .. } => {
                    if seq != next_seq || offset != next_offset || !stdout {
                        contiguous = false;
                    }
                    next_seq = seq + 1;
                    next_offset = offset + len;
                }
                OutputEvent::Eof { .. } => eof = true,
            })
        })
        .await?;
    Ok(Counted { contiguous, bytes: next_offset, eof, wire_bytes: parser.wire_bytes, finished: Instant::now() })
}

fn gated(go: &std::path::Path, cmd: &str) -> String {
    format!("while [ ! -e {go} ]; do sleep 0.005; done; {cmd}", go = quote(go))
}

pub async fn firehose(ctx: &Ctx) -> Result<Run> {
    let bytes = ctx.scaled(GIB, MIB) as u64;
    let viewers = ctx.scaled(100.0, 2.0) as usize;
    let root = ctx.temp_root()?;
    let server = Arc::new(BenchServer::start(root.path(), ServerOptions { env: &[], port: None }).await?);
    let bulk = harness::bulk_cmd(bytes);
    let poll = Duration::from_millis(5);

    // Unwatched: the action waits for a go file, so both runs are timed from the same point.
    let go = root.path().join("go-unwatched");
    let id = server.submit(&gated(&go, &bulk)).await?;
    server.wait_for(&id, &["running"], poll, Duration::from_secs(60)).await?;
    harness::settle_disk().await?;
    let (cpu0, bench0) = (server.cpu(), harness::bench_cpu_s());
    let t0 = Instant::now();
    std::fs::write(&go, b"")?;
    let (status, done) = server.wait_done(&id, Duration::from_secs(3600)).await?;
    let unwatched = done - t0;
    let (unwatched_cpu, unwatched_bench) = (server.cpu().since(cpu0), harness::bench_cpu_s() - bench0);
    let (_, committed) = server.committed_stdout(&id).await?;
    if status != "succeeded" || committed != bytes {
        bail!("the unwatched action ended {status} with {committed} of {bytes} bytes committed");
    }

    // Watched: every viewer connected (and subscribed) before the first byte is written.
    let go = root.path().join("go-watched");
    let id = server.submit(&gated(&go, &bulk)).await?;
    let path = format!("/stream/v1/executions/{id}/output");
    let mut tasks = Vec::with_capacity(viewers);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    for _ in 0..viewers {
        let (server, path, ready) = (Arc::clone(&server), path.clone(), ready_tx.clone());
        tasks.push(tokio::spawn(async move {
            let stream = server.open(&path, &[], READ).await;
            let _ = ready.send(stream.is_ok());
            view_bytes(stream?).await
        }));
    }
    drop(ready_tx);
    let mut connected = 0;
    for _ in 0..viewers {
        match ready_rx.recv().await {
            Some(ok) => connected += usize::from(ok),
            None => break,
        }
    }
    server.wait_for(&id, &["running"], poll, Duration::from_secs(60)).await?;
    harness::settle_disk().await?;
    let rss_before = server.memory().rss_kib;
    let sampler = harness::RssSampler::start(server.pid(), Duration::from_millis(100));
    let (cpu0, bench0) = (server.cpu(), harness::bench_cpu_s());
    let t0 = Instant::now();
    std::fs::write(&go, b"")?;
    let (status, done) = server.wait_done(&id, Duration::from_secs(3600)).await?;
    let watched = done - t0;
    let action_cpu = server.cpu().since(cpu0);
    let mut complete = 0;
    let mut last_viewer = t0;
    let mut wire = 0u64;
    for t in tasks {
        if let Ok(Ok(c)) = t.await {
            if c.contiguous && c.eof && c.bytes == bytes {
                complete += 1;
            }
            last_viewer = last_viewer.max(c.finished);
            wire += c.wire_bytes;
        }
    }
    let (watched_cpu, watched_bench) = (server.cpu().since(cpu0), harness::bench_cpu_s() - bench0);
    let peak = sampler.peak_kib().max(rss_before);
    drop(sampler);
    let (_, committed) = server.committed_stdout(&id).await?;
    let (floor_time, floor_complete) = firehose_floor(viewers, bytes).await?;

    let mut run = Run::default();
    run.params.num("bytes", "bytes", bytes as f64, "").num("viewers", "viewers", viewers as f64, "");
    run.figures
        .num("elapsed_s", "go → succeeded, watched", watched.as_secs_f64(), "s")
        .num("last_viewer_done_s", "go → last viewer has every byte", (last_viewer - t0).as_secs_f64(), "s")
        .flag("every_viewer_every_byte", "every viewer got every byte", complete == viewers && status == "succeeded" && committed == bytes)
        .num("viewers_connected", "viewers connected", connected as f64, "")
        .num("viewers_complete", "viewers with every byte", complete as f64, "")
        .num("delivered_gib", "SSE bytes delivered (all viewers)", wire as f64 / GIB, "GiB")
        .num("server_cpu_s", "server CPU until the action ended", action_cpu.own_s, "s")
        .num("server_cpu_total_s", "server CPU until the last viewer finished", watched_cpu.own_s, "s")
        .num("action_cpu_s", "action CPU (the command)", watched_cpu.children_s, "s")
        .num("bench_cpu_s", "bench (viewers) CPU", watched_bench, "s")
        .num("server_peak_rss_mib", "server peak RSS (sampled)", mib(peak), "MiB")
        .num("floor_elapsed_s", "loopback floor: bare TCP sender to as many viewers", floor_time.as_secs_f64(), "s")
        .flag("floor_every_byte", "loopback floor: every viewer got every byte", floor_complete == viewers)
        .num("floor_ratio", "loopback floor ÷ unwatched (least reachable ratio)", floor_time.as_secs_f64() / unwatched.as_secs_f64(), "")
        .num("watched_to_floor", "watched ÷ loopback floor", watched.as_secs_f64() / floor_time.as_secs_f64(), "");
    run.baseline
        .num("elapsed_s", "go → succeeded, unwatched", unwatched.as_secs_f64(), "s")
        .num("server_cpu_s", "server CPU", unwatched_cpu.own_s, "s")
        .num("action_cpu_s", "action CPU (the command)", unwatched_cpu.children_s, "s")
        .num("bench_cpu_s", "bench CPU", unwatched_bench, "s");
    run.ratio = Some(watched.as_secs_f64() / unwatched.as_secs_f64());
    Ok(run)
}

/// The loopback floor of `firehose`: `bytes` bytes (already in memory) to each of `viewers`
/// connections from a bare sender, the viewers only counting. (time to the last byte, viewers
/// with every byte).
async fn firehose_floor(viewers: usize, bytes: u64) -> Result<(Duration, usize)> {
    let chunk: Arc<[u8]> = b"y\n".repeat(READ / 2).into();
    let addr = floor::serve(viewers, bytes, floor::Source::Repeat(chunk))?;
    let t0 = Instant::now();
    let readers: Vec<_> = (0..viewers)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = RawStream::get(addr, "/", &[], READ).await?;
                let mut n = 0u64;
                stream.read_to_end(&mut |b| n += b.len() as u64).await?;
                anyhow::Ok(n)
            })
        })
        .collect();
    let mut complete = 0;
    for r in readers {
        if let Ok(Ok(n)) = r.await {
            complete += usize::from(n == bytes);
        }
    }
    Ok((t0.elapsed(), complete))
}

/// Bytes and a byte sum: what the join's client computes over everything it reads.
#[derive(Default, Clone, Copy, PartialEq, Debug)]
struct Digest {
    bytes: u64,
    sum: u64,
}

impl Digest {
    fn eat(&mut self, b: &[u8]) {
        self.bytes += b.len() as u64;
        self.sum = self.sum.wrapping_add(byte_sum(b));
    }
}

/// The sum of the bytes, eight at a time (SWAR): two bytes per 16-bit lane, folded every 128
/// words before a lane can overflow. Independent of how the bytes were split into reads.
fn byte_sum(b: &[u8]) -> u64 {
    const LANES: u64 = 0x00ff_00ff_00ff_00ff;
    let mut words = b.chunks_exact(8);
    let mut total = 0u64;
    loop {
        let (mut acc, mut n) = (0u64, 0);
        for w in words.by_ref().take(128) {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            acc += (w & LANES) + ((w >> 8) & LANES);
            n += 1;
        }
        total += (acc & 0xffff) + ((acc >> 16) & 0xffff) + ((acc >> 32) & 0xffff) + (acc >> 48);
        if n < 128 {
            break;
        }
    }
    total + words.remainder().iter().map(|&x| u64::from(x)).sum::<u64>()
}

/// Reads a local file to its end with the join's client: the same read size, the same digest.
fn read_file(path: &std::path::Path) -> std::io::Result<(Duration, Digest)> {
    let t0 = Instant::now();
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; READ];
    let mut d = Digest::default();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        d.eat(&buf[..n]);
    }
    Ok((t0.elapsed(), d))
}

/// Reads a response body to its end: (start → first byte, start → end, digest).
async fn read_body(t0: Instant, mut stream: RawStream) -> Result<(Duration, Duration, Digest)> {
    let mut first: Option<Instant> = None;
    let mut d = Digest::default();
    stream
        .read_to_end(&mut |b| {
            if first.is_none() && !b.is_empty() {
                first = Some(Instant::now());
            }
            d.eat(b);
        })
        .await?;
    let total = t0.elapsed();
    Ok((first.map_or(total, |f| f - t0), total, d))
}

/// Joins the finished execution over `/stdout`: (request → first byte, request → end, digest).
async fn read_stdout(server: &BenchServer, id: &str) -> Result<(Duration, Duration, Digest)> {
    let t0 = Instant::now();
    read_body(t0, server.open(&format!("/v1/executions/{id}/stdout"), &[], READ).await?).await
}

/// The same bytes from the loopback floor's sender, read by the same client.
async fn read_floor(addr: std::net::SocketAddr) -> Result<(Duration, Digest)> {
    let t0 = Instant::now();
    let (_, total, d) = read_body(t0, RawStream::get(addr, "/", &[], READ).await?).await?;
    Ok((total, d))
}

/// Interleaved pairs of `squall execution tail` and a raw /stdout read in `join`.
const TAIL_PAIRS: usize = 3;

/// Runs `squall execution tail ID` against the server as a user would (no credentials: the
/// bench server has authentication off) and reads its stdout to the end: (spawn → exit, digest).
async fn tail_cli(server: &BenchServer, id: &str, home: &std::path::Path) -> Result<(Duration, Digest)> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["execution", "tail", id])
        .env("SQUALL_URL", &server.base)
        .env("HOME", home)
        .env_remove("SQUALL_AUTH_TOKEN")
        .env_remove("SQUALL_API_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        let mut child = cmd.spawn()?;
        let mut out = child.stdout.take().expect("piped stdout");
        let (mut buf, mut d) = (vec![0u8; READ], Digest::default());
        loop {
            let n = out.read(&mut buf)?;
            if n == 0 {
                break;
            }
            d.eat(&buf[..n]);
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("squall execution tail exited with {status}");
        }
        Ok((t0.elapsed(), d))
    })
    .await?
}

pub async fn join(ctx: &Ctx) -> Result<Run> {
    let bytes = ctx.scaled(GIB, MIB) as u64;
    let root = ctx.temp_root()?;
    let server = BenchServer::start(root.path(), ServerOptions { env: &[], port: None }).await?;
    let bulk = harness::bulk_cmd(bytes);
    let file = root.path().join("data").join("join.file");
    harness::time_shell(&format!("{bulk} > {}", quote(&file))).await?;
    let id = server.submit(&bulk).await?;
    let (status, _) = server.wait_done(&id, Duration::from_secs(3600)).await?;
    let (records, committed) = server.committed_stdout(&id).await?;
    if status != "succeeded" || committed != bytes {
        bail!("the action ended {status} with {committed} of {bytes} bytes committed");
    }

    // Two rounds of: the same client reading the same bytes from a local file, then joining
    // over /stdout. The first round pays for pages that are still being written back; the
    // faster round of each counts. The first byte is the first join's.
    // Each round also reads the file through the loopback floor's bare sender.
    let (mut file_time, mut join_time, mut floor_time) = (Duration::MAX, Duration::MAX, Duration::MAX);
    let (mut file_digest, mut d, mut floor_digest) = (Digest::default(), Digest::default(), Digest::default());
    let mut first_byte = None;
    let floor = floor::serve(2, bytes, floor::Source::File(file.clone()))?;
    let (mut cpu, mut bench_cpu) = (0.0, 0.0);
    for _ in 0..2 {
        let path = file.clone();
        let (t, digest) = tokio::task::spawn_blocking(move || read_file(&path)).await??;
        file_time = file_time.min(t);
        file_digest = digest;
        let (cpu0, bench0) = (server.cpu(), harness::bench_cpu_s());
        let (first, total, digest) = read_stdout(&server, &id).await?;
        cpu += server.cpu().since(cpu0).own_s;
        bench_cpu += harness::bench_cpu_s() - bench0;
        first_byte.get_or_insert(first);
        join_time = join_time.min(total);
        d = digest;
        let (t, digest) = read_floor(floor).await?;
        floor_time = floor_time.min(t);
        floor_digest = digest;
    }
    let first_byte = first_byte.unwrap_or_default();
    std::fs::remove_file(&file)?;

    // `squall execution tail` as a user runs it, against the raw /stdout read it should be
    // close to: interleaved pairs, order alternating, median of the pairs' ratios.
    let (mut tails, mut tail_ratios, mut tail_every_byte) = (Vec::new(), Vec::new(), true);
    for pair in 0..TAIL_PAIRS {
        let (tail, raw) = if pair % 2 == 0 {
            let tail = tail_cli(&server, &id, root.path()).await?;
            (tail, read_stdout(&server, &id).await?.1)
        } else {
            let raw = read_stdout(&server, &id).await?.1;
            (tail_cli(&server, &id, root.path()).await?, raw)
        };
        tail_every_byte &= tail.1 == file_digest;
        tail_ratios.push(tail.0.as_secs_f64() / raw.as_secs_f64());
        tails.push(tail.0.as_secs_f64());
    }

    // The same join over the SSE output stream, for comparison (no target).
    let t1 = Instant::now();
    let sse = server.open(&format!("/stream/v1/executions/{id}/output"), &[], READ).await?;
    let counted = view_bytes(sse).await?;
    let sse_time = t1.elapsed();

    let mut run = Run::default();
    run.params.num("bytes", "bytes", bytes as f64, "").num("records", "records in the log", records as f64, "");
    run.figures
        .num("first_byte_ms", "/stdout: request → first byte", first_byte.as_secs_f64() * 1e3, "ms")
        .num("elapsed_s", "/stdout: request → last byte (faster round)", join_time.as_secs_f64(), "s")
        .num("throughput_mib_s", "/stdout throughput", bytes as f64 / MIB / join_time.as_secs_f64(), "MiB/s")
        .flag("every_byte", "every byte, same bytes as the file", d == file_digest && d.bytes == bytes)
        .num("server_cpu_s", "server CPU during both joins", cpu, "s")
        .num("bench_cpu_s", "bench CPU during both joins", bench_cpu, "s")
        .num("floor_elapsed_s", "loopback floor: bare TCP sender of the file (faster round)", floor_time.as_secs_f64(), "s")
        .flag("floor_every_byte", "loopback floor: same bytes as the file", floor_digest == file_digest)
        .num("floor_ratio", "loopback floor ÷ local file (least reachable ratio)", floor_time.as_secs_f64() / file_time.as_secs_f64(), "")
        .num("join_to_floor", "/stdout ÷ loopback floor", join_time.as_secs_f64() / floor_time.as_secs_f64(), "")
        .num("sse_elapsed_s", "SSE output stream: request → EOF", sse_time.as_secs_f64(), "s")
        .num("sse_throughput_mib_s", "SSE output stream throughput", bytes as f64 / MIB / sse_time.as_secs_f64(), "MiB/s")
        .flag("sse_every_byte", "SSE: every byte", counted.contiguous && counted.eof && counted.bytes == bytes)
        .num(
            "tail_elapsed_s",
            "`squall execution tail ID`, its stdout read to the end: spawn → exit (median)",
            stats::median(&mut tails),
            "s",
        )
        .num("tail_to_stdout", "`squall execution tail` ÷ /stdout read (median of interleaved pairs)", stats::median(&mut tail_ratios), "")
        .flag("tail_every_byte", "`squall execution tail`: every byte", tail_every_byte);
    run.baseline.num("elapsed_s", "local file read, same client (faster round)", file_time.as_secs_f64(), "s").num(
        "throughput_mib_s",
        "local file throughput",
        bytes as f64 / MIB / file_time.as_secs_f64(),
        "MiB/s",
    );
    run.ratio = Some(join_time.as_secs_f64() / file_time.as_secs_f64());
    Ok(run)
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_sum_is_the_sum_of_the_bytes() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let plain: u64 = data.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(super::byte_sum(&data), plain);
        let split: u64 = data.chunks(1001).map(super::byte_sum).sum();
        assert_eq!(split, plain);
        assert_eq!(super::byte_sum(&[255; 8 * 128 * 3 + 5]), 255 * (8 * 128 * 3 + 5));
    }
}
