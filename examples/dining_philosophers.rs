//! Dijkstra's dining philosophers: five philosophers, five forks (each a process), and a butler who
//! seats at most four at a time so the table cannot deadlock.
//!
//! `cargo run --example dining_philosophers -- --backend threads --meals 10`

mod common;

use clap::Parser;
use cspnet::{Backend, with_backend};

/// Philosophers share forks; a butler prevents deadlock.
#[derive(Parser)]
struct Args {
    /// threads, processes or coroutines
    #[arg(long, default_value = "threads")]
    backend: Backend,
    /// Philosophers (and forks) at the table
    #[arg(long, default_value_t = 5)]
    philosophers: u32,
    /// Meals each philosopher eats
    #[arg(long, default_value_t = 10)]
    meals: u64,
}

fn main() {
    let args = Args::parse();
    if args.philosophers < 2 {
        common::usage_error("--philosophers must be at least 2");
    }
    let (n, meals) = (args.philosophers as usize, args.meals);
    let out = common::finish(with_backend!(args.backend, csp => {
        let pick: Vec<csp::Channel<u32>> = (0..n).map(|_| csp::Channel::new()).collect();
        let put: Vec<csp::Channel<u32>> = (0..n).map(|_| csp::Channel::new()).collect();
        let sit = csp::Channel::<u32>::named("sit");
        let stand = csp::Channel::<u32>::named("stand");
        let mut procs = Vec::new();
        for i in 0..n {
            let (left, right) = (i, (i + 1) % n);
            let (pl, pr) = (pick[left].writer(), pick[right].writer());
            let (ul, ur) = (put[left].writer(), put[right].writer());
            let (sw, tw) = (sit.writer(), stand.writer());
            procs.push(
                csp::process(move || {
                    let me = i as u32;
                    for _ in 0..meals {
                        sw.write(me)?; // ask the butler for a seat
                        pl.write(me)?;
                        pr.write(me)?;
                        // eating
                        ul.write(me)?;
                        ur.write(me)?;
                        tw.write(me)?; // leave the table, thinking
                    }
                    Ok(meals)
                })
                .named(&format!("philosopher-{i}")),
            );
        }
        for (i, (pk, pt)) in pick.iter().zip(&put).enumerate() {
            let (pk, pt) = (pk.reader(), pt.reader());
            procs.push(
                csp::process(move || {
                    let mut uses = 0;
                    loop {
                        match pk.read() {
                            Ok(who) => {
                                let back = pt.read()?;
                                assert_eq!(who, back, "a fork was put down by someone who did not hold it");
                                uses += 1;
                            }
                            Err(e) if e.is_retired() => return Ok(uses), // both neighbours left
                            Err(e) => return Err(e),
                        }
                    }
                })
                .named(&format!("fork-{i}")),
            );
        }
        let (sr, tr) = (sit.reader(), stand.reader());
        let seats = n as u64 - 1;
        procs.push(
            csp::process(move || {
                let (mut seated, mut most) = (0u64, 0u64);
                loop {
                    let mut alt = csp::Alternation::new();
                    if seated < seats {
                        alt = alt.input(&sr, |_| 1i64);
                    }
                    match alt.input(&tr, |_| -1i64).select() {
                        Ok(delta) => {
                            seated = seated.checked_add_signed(delta).expect("seat count");
                            most = most.max(seated);
                        }
                        Err(e) if e.is_retired() => return Ok(most),
                        Err(e) => return Err(e),
                    }
                }
            })
            .named("butler"),
        );
        drop((pick, put, sit, stand));
        csp::parallel(procs)
    }));
    let values: Vec<u64> = out
        .iter()
        .map(|o| o.unwrap_or_else(|e| common::usage_error(&format!("a process ended early: {e}"))))
        .collect();
    let eaten: u64 = values[..n].iter().sum();
    let fork_uses: u64 = values[n..2 * n].iter().sum();
    let most_seated = values[2 * n];
    assert_eq!(fork_uses, 2 * eaten, "every meal takes two forks");
    println!(
        "backend: {}, the butler seated at most {most_seated} at once",
        args.backend
    );
    println!("{fork_uses} fork uses for {eaten} meals");
    println!("dining_philosophers: {n} philosophers ate {meals} meals each");
}
