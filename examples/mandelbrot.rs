//! Renders the Mandelbrot set with a farm over rows and writes it as a PGM image.
//!
//! `cargo run --release --example mandelbrot -- --backend threads --workers 2 --width 800 --height 600 --out mandelbrot.pgm`

mod common;

use clap::Parser;
use common::kernels::mandelbrot_row;
use cspnet::{Backend, with_backend};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// A farm of workers rendering rows of the Mandelbrot set.
#[derive(Parser)]
struct Args {
    /// threads, processes or coroutines
    #[arg(long, default_value = "threads")]
    backend: Backend,
    /// Worker processes
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Image width in pixels
    #[arg(long, default_value_t = 800)]
    width: u32,
    /// Image height in pixels
    #[arg(long, default_value_t = 600)]
    height: u32,
    /// Iterations before a point counts as inside the set
    #[arg(long, default_value_t = 256)]
    max_iter: u32,
    /// Where to write the image (binary PGM)
    #[arg(long, default_value = "mandelbrot.pgm")]
    out: PathBuf,
}

fn main() {
    let args = Args::parse();
    if args.workers == 0 || args.width == 0 || args.height == 0 || args.max_iter == 0 {
        common::usage_error("--workers, --width, --height and --max-iter must be at least 1");
    }
    let (workers, width, height, max_iter) = (args.workers, args.width, args.height, args.max_iter);
    let path = args.out.clone();
    let start = Instant::now();
    let out = common::finish(with_backend!(args.backend, csp => {
        // Every row posted at once and a result slot per worker: workers never wait on the farmer
        // or the collector, and the farmer is never woken to refill the queue.
        let rows = csp::Channel::<u32>::with_buffer(height as usize);
        let pixels = csp::Channel::<(u32, Vec<u8>)>::with_buffer(workers as usize);
        let mut procs = Vec::new();
        let rw = rows.writer();
        procs.push(
            csp::process(move || {
                for row in 0..height {
                    rw.write(row)?;
                }
                Ok(String::new())
            })
            .named("farmer"),
        );
        for w in 0..workers {
            let (rr, pw) = (rows.reader(), pixels.writer());
            procs.push(
                csp::process(move || {
                    for row in rr {
                        let row = row?;
                        pw.write((row, mandelbrot_row(row, width, height, max_iter)))?;
                    }
                    Ok(String::new())
                })
                .named(&format!("worker-{w}")),
            );
        }
        let pr = pixels.reader();
        procs.push(
            csp::process(move || {
                let mut image = vec![0u8; width as usize * height as usize];
                for item in pr {
                    let (row, line) = item?;
                    let at = row as usize * width as usize;
                    image[at..at + width as usize].copy_from_slice(&line);
                }
                // Writing a file is a blocking call: io() keeps coroutine workers free.
                csp::io(|| -> std::io::Result<()> {
                    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
                    write!(f, "P5\n{width} {height}\n255\n")?;
                    f.write_all(&image)?;
                    f.flush()
                })
                .map(|()| String::new())
                .or_else(|e| Ok(format!("could not write {}: {e}", path.display())))
            })
            .named("collector"),
        );
        drop((rows, pixels));
        csp::parallel(procs)
    }));
    match out.last() {
        Some(Ok(problem)) if problem.is_empty() => {}
        Some(Ok(problem)) => common::usage_error(problem),
        other => common::usage_error(&format!("the collector ended early: {other:?}")),
    }
    println!(
        "backend: {}, workers: {workers}, {width}x{height}",
        args.backend
    );
    println!("{:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    println!("mandelbrot: wrote {}", args.out.display());
}
