//! The benchmark scenarios as plain functions, shared by the criterion benches and `bench_report`.
//!
//! Each cspnet scenario takes the backend and returns `Run<Duration>`: `Err(BackendError)` when the
//! backend is not built in, `Ok(Err(ProcessError))` when the network failed, else the time that the
//! scenario's own comment says is timed. The raw baselines live in `baselines`.
// Each bench uses its own part of this module.
#![allow(dead_code)]
// Each example file brings its own copy of examples/common, and the kernels are needed here too.
#![allow(clippy::duplicate_mod)]

#[path = "../baselines/mod.rs"]
pub(crate) mod baselines;
#[path = "../../examples/commstime.rs"]
mod commstime_example;
#[path = "../../examples/common/kernels.rs"]
pub(crate) mod kernels;
#[path = "../../examples/token_ring.rs"]
mod token_ring_example;

use cspnet::{Backend, BackendError, Outcome, ProcessError, with_backend};
use kernels::{mandelbrot_row, pi_hits};
use rayon::prelude::*;
use std::time::{Duration, Instant};

/// What a cspnet scenario gives back: the backend may be missing, the network may fail.
pub(crate) type Run<T> = Result<Result<T, ProcessError>, BackendError>;

/// Criterion settings that keep every bench quick: 10 samples, short warm-up and measurement.
pub(crate) fn quick() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// For `iter_custom`: runs at least `min` units (however few iterations criterion asks for) and
/// scales the time to `iters` units, so that a network's fixed cost around the timed part (the go
/// and done messages of a ring, say) never weighs on a sample of a handful of iterations.
pub(crate) fn per_iter(iters: u64, min: u64, run: impl FnOnce(u64) -> Duration) -> Duration {
    let units = iters.max(min).max(1);
    run(units).mul_f64(iters as f64 / units as f64)
}

/// The backends this build includes, in the docs' order.
pub(crate) fn backends() -> impl Iterator<Item = Backend> {
    Backend::ALL.into_iter().filter(|b| b.is_available())
}

fn nanos(run: Run<u64>) -> Run<Duration> {
    run.map(|r| r.map(Duration::from_nanos))
}

/// One token around a ring of `n` processes: the time `hops` hops took (start-up excluded).
pub(crate) fn ring(backend: Backend, n: usize, hops: u64) -> Run<Duration> {
    nanos(token_ring_example::ring(backend, n, 1, hops))
}

/// `tokens` tokens at once around a ring of `n`: the time `hops` hops of each token took.
pub(crate) fn tokens(backend: Backend, n: usize, tokens: u64, hops: u64) -> Run<Duration> {
    nanos(token_ring_example::ring(backend, n, tokens, hops))
}

/// Commstime: the time `cycles` cycles (four communications each) took, warm-up excluded.
pub(crate) fn commstime(backend: Backend, cycles: u64) -> Run<Duration> {
    nanos(commstime_example::commstime(backend, cycles))
}

/// One process alting (`select`) over `k` input channels, each fed by its own writer process: the
/// time `messages` selects took, after one warm-up message per writer.
pub(crate) fn fan_in(backend: Backend, k: usize, messages: u64) -> Run<Duration> {
    nanos(with_backend!(backend, csp => {
        let chans: Vec<csp::Channel<u64>> = (0..k).map(|_| csp::Channel::new()).collect();
        let mut procs: Vec<csp::Process<u64>> = chans
            .iter()
            .map(|c| {
                let w = c.writer();
                csp::process(move || loop {
                    w.write(1)?;
                })
            })
            .collect();
        let readers: Vec<csp::Reader<u64>> = chans.iter().map(|c| c.reader()).collect();
        procs.push(
            csp::process(move || {
                let select = || {
                    let mut alt = csp::Alternation::new();
                    for r in &readers {
                        alt = alt.input(r, |v: u64| v);
                    }
                    alt.select()
                };
                for _ in 0..k {
                    select()?; // warm up: every writer has started
                }
                let start = Instant::now();
                for _ in 0..messages {
                    select()?;
                }
                let nanos = start.elapsed().as_nanos() as u64;
                for r in &readers {
                    r.poison(); // ends every writer
                }
                Ok(nanos)
            })
            .named("alter"),
        );
        drop(chans);
        csp::parallel(procs).map(|o| o[k].expect("the alter ends normally"))
    }))
}

/// Nanoseconds since `epoch`. A forked child has the parent's copy of `epoch`, and the monotonic
/// clock is system-wide, so these stamps compare across every backend's processes.
fn since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// A farm's figure from its processes' results: the farmer (first) returns the stamp when every
/// worker was ready, the collector (last) its answer and the stamp of the last result.
fn farm_result(out: Vec<Outcome<(u64, u64)>>) -> Option<(u64, Duration)> {
    let (t0, _) = *out.first()?.as_ref().ok()?;
    let (answer, t1) = *out.last()?.as_ref().ok()?;
    Some((answer, Duration::from_nanos(t1.saturating_sub(t0))))
}

/// Monte Carlo pi on a farm (farmer, `workers` workers, collector), `samples` samples in jobs of
/// `batch`: the time from every worker being ready to the collector having the last result
/// (process start-up excluded, as in every other scenario; `spawn` measures it). The answer is
/// checked.
pub(crate) fn pi_farm(backend: Backend, workers: u32, samples: u64, batch: u64) -> Run<Duration> {
    let epoch = Instant::now();
    let jobs_total = pi_jobs(samples, batch).count();
    let out = with_backend!(backend, csp => {
        // The farmer posts every job at once, and results queue a slot per worker: a worker
        // never waits for the farmer or the collector, and the farmer is never woken to refill
        // the queue (on this VM each wake-up takes a core from a worker for tens of µs).
        let jobs = csp::Channel::<(u64, u64)>::with_buffer(jobs_total);
        let hits = csp::Channel::<u64>::with_buffer(workers as usize);
        let ready = csp::Channel::<u32>::named("ready");
        let mut procs = Vec::new();
        let (jw, rr) = (jobs.writer(), ready.reader());
        procs.push(csp::process(move || {
            for _ in 0..workers {
                rr.read()?;
            }
            let t0 = since(epoch);
            for (seed, n) in pi_jobs(samples, batch) {
                jw.write((seed, n))?;
            }
            Ok((t0, 0))
        }));
        for _ in 0..workers {
            let (jr, hw, rw) = (jobs.reader(), hits.writer(), ready.writer());
            procs.push(csp::process(move || {
                rw.write(1)?;
                for job in jr {
                    let (seed, n) = job?;
                    hw.write(pi_hits(seed, n))?;
                }
                Ok((0, 0))
            }));
        }
        let hr = hits.reader();
        procs.push(csp::process(move || {
            let mut total = 0;
            for _ in 0..jobs_total {
                total += hr.read()?;
            }
            Ok((total, since(epoch)))
        }));
        drop((jobs, hits, ready));
        csp::parallel(procs).map(farm_result)
    })?;
    Ok(out.map(|r| {
        let (total, elapsed) = r.expect("the farmer and the collector end normally");
        assert_eq!(total, pi_expected(samples, batch), "the farm lost a job");
        elapsed
    }))
}

/// The jobs of the pi farm: (seed, samples), the same split for every backend and rayon.
fn pi_jobs(samples: u64, batch: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..samples.div_ceil(batch)).map(move |j| (j, batch.min(samples - j * batch)))
}

fn pi_expected(samples: u64, batch: u64) -> u64 {
    pi_jobs(samples, batch).map(|(s, n)| pi_hits(s, n)).sum()
}

/// The same pi jobs with rayon's `par_iter` on a pool of `threads` threads: the time it took (the
/// pool is started before the clock starts).
pub(crate) fn pi_rayon(samples: u64, batch: u64, threads: usize) -> Duration {
    let jobs: Vec<_> = pi_jobs(samples, batch).collect();
    let pool = rayon_pool(threads);
    let start = Instant::now();
    let total: u64 = pool.install(|| jobs.par_iter().map(|&(s, n)| pi_hits(s, n)).sum());
    let elapsed = start.elapsed();
    assert_eq!(total, pi_expected(samples, batch));
    elapsed
}

fn rayon_pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
}

/// The Mandelbrot image every variant renders.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Image {
    /// Pixels per row.
    pub(crate) width: u32,
    /// Rows.
    pub(crate) height: u32,
    /// Iterations before a point counts as inside the set.
    pub(crate) max_iter: u32,
}

/// How a Mandelbrot worker computes the rows it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// One row per job, the kernel as a plain Rust loop (PyCSP's "external C module").
    Plain,
    /// A band of rows per job, handed to rayon's `into_par_iter` on a pool the worker starts with as
    /// many threads as cores (PyCSP's "numpy" variant: the worker calls out to a parallel library).
    Rayon,
}

/// Rows per job for the rayon kernel: about four bands per worker.
fn band(image: Image, workers: u32) -> u32 {
    image.height.div_ceil(4 * workers).max(1)
}

/// Mandelbrot on a farm over rows: the time from every worker being ready (a rayon worker has
/// started its pool) to the collector having the last rows. The collector assembles the image; its
/// checksum is compared with a plain sequential render.
pub(crate) fn mandelbrot_farm(
    backend: Backend,
    workers: u32,
    image: Image,
    kernel: Kernel,
) -> Run<Duration> {
    let Image {
        width,
        height,
        max_iter,
    } = image;
    let rows_per_job = match kernel {
        Kernel::Plain => 1,
        Kernel::Rayon => band(image, workers),
    };
    let jobs_total = height.div_ceil(rows_per_job);
    let threads = cores();
    let epoch = Instant::now();
    let out = with_backend!(backend, csp => {
        // Every job posted at once, a result slot per worker, as in the pi farm.
        let jobs = csp::Channel::<u32>::with_buffer(jobs_total as usize);
        let pixels = csp::Channel::<(u32, Vec<u8>)>::with_buffer(workers as usize);
        let ready = csp::Channel::<u32>::named("ready");
        let mut procs = Vec::new();
        let (jw, rr) = (jobs.writer(), ready.reader());
        procs.push(csp::process(move || {
            for _ in 0..workers {
                rr.read()?;
            }
            let t0 = since(epoch);
            for first in (0..height).step_by(rows_per_job as usize) {
                jw.write(first)?;
            }
            Ok((t0, 0))
        }));
        for _ in 0..workers {
            let (jr, pw, rw) = (jobs.reader(), pixels.writer(), ready.writer());
            procs.push(csp::process(move || {
                // Started in the worker, so that it exists in a forked child too; io() keeps a
                // coroutine worker free while rayon runs.
                let pool = match kernel {
                    Kernel::Plain => None,
                    Kernel::Rayon => Some(csp::io(|| rayon_pool(threads))),
                };
                rw.write(1)?;
                for first in jr {
                    let first = first?;
                    let last = (first + rows_per_job).min(height);
                    let band = match &pool {
                        None => mandelbrot_row(first, width, height, max_iter),
                        Some(pool) => csp::io(|| {
                            pool.install(|| {
                                (first..last)
                                    .into_par_iter()
                                    .flat_map_iter(|row| mandelbrot_row(row, width, height, max_iter))
                                    .collect()
                            })
                        }),
                    };
                    pw.write((first, band))?;
                }
                Ok((0, 0))
            }));
        }
        let pr = pixels.reader();
        procs.push(csp::process(move || {
            let mut image = vec![0u8; width as usize * height as usize];
            for _ in 0..jobs_total {
                let (first, band) = pr.read()?;
                let at = first as usize * width as usize;
                image[at..at + band.len()].copy_from_slice(&band);
            }
            let t1 = since(epoch);
            Ok((image.iter().map(|&p| u64::from(p)).sum(), t1))
        }));
        drop((jobs, pixels, ready));
        csp::parallel(procs).map(farm_result)
    })?;
    Ok(out.map(|r| {
        let (sum, elapsed) = r.expect("the farmer and the collector end normally");
        assert_eq!(sum, mandelbrot_checksum(image), "the farm lost rows");
        elapsed
    }))
}

fn mandelbrot_checksum(image: Image) -> u64 {
    (0..image.height)
        .flat_map(|row| mandelbrot_row(row, image.width, image.height, image.max_iter))
        .map(u64::from)
        .sum()
}

/// The image with rayon alone (`into_par_iter` over rows on a pool of `threads` threads, started
/// before the clock starts): the time it took.
pub(crate) fn mandelbrot_rayon(image: Image, threads: usize) -> Duration {
    let pool = rayon_pool(threads);
    let start = Instant::now();
    let rows: Vec<Vec<u8>> = pool.install(|| {
        (0..image.height)
            .into_par_iter()
            .map(|row| mandelbrot_row(row, image.width, image.height, image.max_iter))
            .collect()
    });
    let elapsed = start.elapsed();
    std::hint::black_box(rows);
    elapsed
}

/// How many threads rayon gets where it stands in for "every core".
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `messages` `Vec<u8>`s of `size` bytes through one channel from a writer process (which clones
/// its buffer for each message) to a reader: the time they took, after one warm-up message.
pub(crate) fn payload(backend: Backend, size: usize, messages: u64) -> Run<Duration> {
    nanos(with_backend!(backend, csp => {
        let ch = csp::Channel::<Vec<u8>>::named("payload");
        let (w, r) = (ch.writer(), ch.reader());
        drop(ch);
        csp::parallel([
            csp::process(move || {
                let buf = vec![0xA5u8; size];
                for _ in 0..=messages {
                    w.write(buf.clone())?;
                }
                Ok(0)
            }),
            csp::process(move || {
                assert_eq!(r.read()?.len(), size); // warm up
                let start = Instant::now();
                for _ in 0..messages {
                    std::hint::black_box(r.read()?);
                }
                Ok(start.elapsed().as_nanos() as u64)
            }),
        ])
        .map(|o| o[1].expect("the reader ends normally"))
    }))
}

/// The floor for a payload: cloning (allocating and copying) a `Vec<u8>` of `size` bytes and
/// dropping it, `messages` times.
pub(crate) fn clone_floor(size: usize, messages: u64) -> Duration {
    let buf = vec![0xA5u8; size];
    let start = Instant::now();
    for _ in 0..messages {
        std::hint::black_box(std::hint::black_box(&buf).clone());
    }
    start.elapsed()
}

/// Starting processes: `parallel` of `n` processes that return at once; the time it took.
pub(crate) fn spawn(backend: Backend, n: u64) -> Run<Duration> {
    let start = Instant::now();
    let out = with_backend!(backend, csp => {
        csp::parallel((0..n).map(|i| csp::process(move || Ok(i)))).map(|o| o.len())
    })?;
    let elapsed = start.elapsed();
    Ok(out.map(|len| {
        assert_eq!(len as u64, n);
        elapsed
    }))
}

/// A barrier of `n` members, each syncing `syncs` times in a row: the time the syncs took, from
/// the first member's first sync (every member has started: a warm-up sync) to the last sync.
pub(crate) fn barrier(backend: Backend, n: usize, syncs: u64) -> Run<Duration> {
    nanos(with_backend!(backend, csp => {
        let b = csp::Barrier::new();
        let procs: Vec<csp::Process<u64>> = (0..n)
            .map(|_| {
                let end = b.enroll();
                csp::process(move || {
                    end.sync()?; // warm up: every member has started
                    let start = Instant::now();
                    for _ in 0..syncs {
                        end.sync()?;
                    }
                    Ok(start.elapsed().as_nanos() as u64)
                })
            })
            .collect();
        drop(b);
        csp::parallel(procs).map(|o| o.into_iter().map(|t| t.expect("a member ends normally")).max().unwrap_or(0))
    }))
}

/// Monte Carlo pi on the library's farm (`Farm`, written once over the backend trait): the same
/// jobs as `pi_farm`, each `(seed, samples)` under its own ID. The whole run is timed, worker
/// start-up included (the figure a user of `Farm::run` gets). The answer is checked.
pub(crate) fn pi_farm_layer(
    backend: Backend,
    workers: u32,
    samples: u64,
    batch: u64,
) -> Run<Duration> {
    let jobs: Vec<(String, (u64, u64))> = pi_jobs(samples, batch)
        .map(|job| (job.0.to_string(), job))
        .collect();
    let start = Instant::now();
    let total = with_backend!(backend, csp => {
        let farm = csp::Farm::new(|(seed, n): (u64, u64), _| pi_hits(seed, n)).workers(workers as usize);
        Ok::<_, ProcessError>(farm_total(farm.run(jobs)))
    })?;
    let elapsed = start.elapsed();
    Ok(total.map(|total| {
        assert_eq!(total, pi_expected(samples, batch), "the farm lost a job");
        elapsed
    }))
}

/// The sum of a farm's results, which must all have arrived.
fn farm_total<R: Copy + Into<u64>>(
    report: Result<cspnet::FarmReport<R>, cspnet::FarmError>,
) -> u64 {
    let report = report.expect("the farm starts");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    report.results.values().map(|&v| v.into()).sum()
}

/// Rows per job of the farm-layer Mandelbrot: about 64 bands per worker (a few rows each), fine
/// enough that no worker waits long for the last band.
fn farm_band(image: Image, workers: u32) -> u32 {
    image.height.div_ceil(64 * workers).max(1)
}

/// Mandelbrot on the library's farm: a band of rows per job, each job's pixels back under its ID;
/// the whole run timed, worker start-up included. The image's checksum is checked.
pub(crate) fn mandelbrot_farm_layer(backend: Backend, workers: u32, image: Image) -> Run<Duration> {
    let Image {
        width,
        height,
        max_iter,
    } = image;
    let band = farm_band(image, workers);
    let jobs: Vec<(String, u32)> = (0..height)
        .step_by(band as usize)
        .map(|first| (format!("{first:05}"), first))
        .collect();
    let start = Instant::now();
    let sum = with_backend!(backend, csp => {
        let farm = csp::Farm::new(move |first: u32, _| {
            let last = (first + band).min(height);
            (first..last)
                .flat_map(|row| mandelbrot_row(row, width, height, max_iter))
                .collect::<Vec<u8>>()
        })
        .workers(workers as usize);
        let report = farm.run(jobs).expect("the farm starts");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        // IDs sort as the rows do: the bands in order are the image.
        let image: Vec<u8> = report.results.into_values().flatten().collect();
        assert_eq!(image.len(), width as usize * height as usize);
        Ok::<_, ProcessError>(image.iter().map(|&p| u64::from(p)).sum::<u64>())
    })?;
    let elapsed = start.elapsed();
    Ok(sum.map(|sum| {
        assert_eq!(sum, mandelbrot_checksum(image), "the farm lost rows");
        elapsed
    }))
}
