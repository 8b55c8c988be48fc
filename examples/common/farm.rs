//! A farm written once over the backend trait: a farmer alternates between handing out jobs and
//! taking results, so it runs unchanged on threads, processes and coroutines.

use super::kernels::pi_hits;
use cspnet::ProcessError;
use cspnet::generic::{self as csp, Carries};

/// What one turn of the farmer's alternation did.
enum Turn {
    Sent,
    Got(u64),
}

/// Counts the points of `samples` that fall inside the quarter circle, in jobs of `batch` points
/// spread over `workers` worker processes, on the backend `B`. The farmer is one process that
/// offers the next job and accepts a result in the same alternation (`select`, so neither side
/// starves), and stops handing out work by retiring the job channel, which ends every worker.
pub(crate) fn pi_farm<B>(workers: u32, samples: u64, batch: u64) -> Result<u64, ProcessError>
where
    B: Carries<(u64, u64)> + Carries<u64>,
{
    let jobs = csp::Channel::<B, (u64, u64)>::with_buffer(workers as usize);
    let hits = csp::Channel::<B, u64>::with_buffer(workers as usize);
    let mut procs = Vec::new();
    let (jw, hr) = (jobs.writer(), hits.reader());
    procs.push(
        csp::process(move || {
            let (mut seed, mut left, mut out, mut total) = (0, samples, 0u64, 0);
            while left > 0 {
                let job = (seed, left.min(batch));
                let turn = csp::Alternation::new()
                    .output(&jw, job, || Turn::Sent)
                    .input(&hr, Turn::Got)
                    .select()?;
                match turn {
                    Turn::Sent => (seed, left, out) = (seed + 1, left - job.1, out + 1),
                    Turn::Got(h) => (total, out) = (total + h, out - 1),
                }
            }
            jw.retire(); // no more jobs: each worker's loop ends once the queue is drained
            for _ in 0..out {
                total += hr.read()?;
            }
            Ok(total)
        })
        .named("farmer"),
    );
    for w in 0..workers {
        let (jr, hw) = (jobs.reader(), hits.writer());
        procs.push(
            csp::process(move || {
                for job in jr {
                    let (seed, n) = job?;
                    hw.write(pi_hits(seed, n))?;
                }
                Ok(0)
            })
            .named(&format!("worker-{w}")),
        );
    }
    drop((jobs, hits));
    let out = csp::parallel::<B, _, _>(procs)?;
    Ok(out[0].expect("the farmer ends with the total"))
}
