//! The `simulations` example's job set, run as its users run it (harness = false: every job is a
//! fresh copy of this test binary, so `main` must start with the job set's `init`).
//!
//! Checks, each a plain function: 12 jobs with `-j 2` run in 12 distinct OS processes, each with
//! its own directory and stdout file, never more than 2 at once, results by ID; a job whose
//! process is killed mid-run is one failure naming it while the other 11 results arrive; the
//! program's `--list`, `--job ID` and an unknown ID (exit 2). Processes only (Linux): a fresh
//! program per job is what only OS processes can do.

#[cfg(target_os = "linux")]
#[path = "../examples/simulations.rs"]
#[allow(dead_code)] // its `main` is the example's
mod simulations;

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("the processes backend is Linux-only");
}

#[cfg(target_os = "linux")]
mod linux {
    use super::simulations;
    use clap::{Args, FromArgMatches};
    use cspnet::Cause;
    use cspnet::processes::{JobContext, JobOutput, JobSet, JobSetArgs};
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// One check: the job set, and the directory it may use.
    type Check = fn(&JobSet, &Path);

    /// Marks a run of this binary as the job-set program itself (for the command-line checks).
    const PROGRAM: &str = "--as-program";

    /// A job that records its pid (atomically, by a rename) and then runs until it is killed
    /// (giving up after a minute, so a broken test does not hang).
    fn victim(ctx: &JobContext) -> JobOutput {
        let dir = ctx.dir().expect("a job directory");
        std::fs::write(dir.join("pid.tmp"), std::process::id().to_string()).unwrap();
        std::fs::rename(dir.join("pid.tmp"), dir.join("pid")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        Err("was never killed".into())
    }

    pub(super) fn main() {
        let set = simulations::suite().job("victim", victim);
        set.init().expect("the job set's IDs are distinct"); // a job runs here and exits
        let mut args = std::env::args().skip(1);
        if args.next().as_deref() == Some(PROGRAM) {
            let cmd = JobSetArgs::augment_args(clap::Command::new("simulations"));
            let matches = cmd
                .try_get_matches_from(std::iter::once("simulations".to_string()).chain(args))
                .unwrap_or_else(|e| e.exit());
            let parsed = JobSetArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
            std::process::exit(set.execute(&parsed));
        }
        let out = std::env::temp_dir().join(format!("cspnet-simulations-{}", std::process::id()));
        let checks: [(&str, Check); 3] = [
            (
                "twelve_jobs_run_in_twelve_fresh_processes_two_at_a_time",
                twelve_jobs_run_in_twelve_fresh_processes_two_at_a_time,
            ),
            (
                "a_killed_job_is_one_failure_naming_it_and_the_rest_arrive",
                a_killed_job_is_one_failure_naming_it_and_the_rest_arrive,
            ),
            (
                "the_program_lists_runs_one_and_rejects_unknown_ids",
                the_program_lists_runs_one_and_rejects_unknown_ids,
            ),
        ];
        let mut baseline = None;
        for (name, check) in checks {
            let dir = out.join(name);
            check(&set, &dir);
            std::fs::remove_dir_all(&dir).unwrap();
            // The first job started the orphan guard's watchdog, which lives as long as we do.
            let kids = own_children();
            let watchdog = baseline.get_or_insert_with(|| kids.clone());
            assert!(watchdog.len() <= 1, "{name} left a child process: {kids:?}");
            assert_eq!(&kids, watchdog, "{name} left a child process");
            println!("test {name} ... ok");
        }
        std::fs::remove_dir_all(&out).unwrap();
    }

    /// The suite's 12 jobs (the victim is this test's own).
    fn suite_ids(set: &JobSet) -> Vec<&str> {
        set.ids().filter(|id| *id != "victim").collect()
    }

    /// The pid a simulation printed on its first stdout line ("<id>: pid <n> simulating ...").
    fn pid_in_stdout(dir: &Path) -> u32 {
        let text = std::fs::read_to_string(dir.join("stdout.txt")).expect("its own stdout file");
        let first = text.lines().next().expect("a first line");
        first
            .split_whitespace()
            .nth(2)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {first:?}"))
    }

    fn twelve_jobs_run_in_twelve_fresh_processes_two_at_a_time(set: &JobSet, out: &Path) {
        let ids = suite_ids(set);
        assert_eq!(ids.len(), 12);
        let mut run = set.start(Some(&ids), 2, out).unwrap();
        let mut results = Vec::new();
        loop {
            assert!(run.running() <= 2, "at most K = 2 jobs at once");
            let Some(r) = run.next() else { break };
            results.push(r);
        }
        drop(run);
        let got: BTreeSet<&str> = results.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(got, ids.iter().copied().collect(), "every result, by ID");
        let mut pids = BTreeSet::new();
        for r in &results {
            let line = r
                .outcome
                .as_ref()
                .expect("no job failed")
                .as_ref()
                .expect("ran");
            assert!(line.starts_with("IPC "), "{}: {line}", r.id);
            let dir = out.join(&r.id);
            for file in ["config.ini", "stats.txt", "stdout.txt", "stderr.txt"] {
                assert!(dir.join(file).is_file(), "{}: no {file}", r.id);
            }
            let stdout = std::fs::read_to_string(dir.join("stdout.txt")).unwrap();
            assert!(
                stdout.starts_with(&format!("{}: pid ", r.id)),
                "its own stdout: {stdout}"
            );
            pids.insert(pid_in_stdout(&dir));
        }
        assert_eq!(pids.len(), 12, "twelve distinct processes: {pids:?}");
        assert!(!pids.contains(&std::process::id()));
    }

    fn a_killed_job_is_one_failure_naming_it_and_the_rest_arrive(set: &JobSet, out: &Path) {
        let mut ids = suite_ids(set);
        ids.pop();
        ids.insert(3, "victim");
        let pid_file = out.join("victim").join("pid");
        let killer = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let pid: i32 = loop {
                if let Ok(text) = std::fs::read_to_string(&pid_file) {
                    break text.trim().parse().expect("a pid");
                }
                assert!(Instant::now() < deadline, "the victim never wrote its pid");
                std::thread::sleep(Duration::from_millis(5));
            };
            // SAFETY: kill(2) with a pid read from the job's file: our own child, still running
            // (it runs until killed), so no other process can have its pid.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
            pid as u32
        });
        let report = set.run(Some(&ids), 2, out).unwrap();
        let killed = killer.join().unwrap();
        assert_eq!(report.results.len(), 11, "every other job's result");
        assert!(report.results.values().all(Result::is_ok));
        assert_eq!(report.failures.len(), 1);
        let f = &report.failures["victim"];
        assert_eq!(f.id, "victim");
        assert_eq!(f.pid, Some(killed), "the failure names the killed process");
        assert!(
            matches!(&f.cause, Cause::Crashed(m) if m.contains("SIGKILL")),
            "{f}"
        );
        assert!(
            f.to_string()
                .starts_with("job 'victim' failed: worker 'simulations-worker-")
        );
    }

    fn program(args: &[&str]) -> (i32, String, String) {
        let out = Command::new(std::env::current_exe().unwrap())
            .arg(PROGRAM)
            .args(args)
            .output()
            .unwrap();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (
            out.status.code().unwrap_or(-1),
            text(out.stdout),
            text(out.stderr),
        )
    }

    fn the_program_lists_runs_one_and_rejects_unknown_ids(set: &JobSet, out: &Path) {
        let (code, listed, _) = program(&["--list"]);
        assert_eq!(code, 0);
        assert_eq!(
            listed.lines().collect::<Vec<_>>(),
            set.ids().collect::<Vec<_>>()
        );

        let out_s = out.to_str().unwrap();
        let (code, said, _) = program(&["--job", "sort-o3", "--out", out_s]);
        assert_eq!(code, 0);
        assert!(said.contains("sort-o3: pid "), "{said}");
        assert!(
            said.trim_end()
                .lines()
                .last()
                .unwrap()
                .starts_with("sort-o3: IPC ")
        );
        assert!(out.join("sort-o3").join("stats.txt").is_file());

        let (code, _, err) = program(&["--job", "no-such-sim", "--out", out_s]);
        assert_eq!(code, 2);
        assert_eq!(
            err.trim(),
            "error: no job 'no-such-sim' in simulations (--list shows its 13 jobs)"
        );
        let (code, _, _) = program(&["-j", "0"]);
        assert_eq!(code, 2, "K = 0 is a usage error");
    }

    /// This process's children (every thread's), by pid.
    fn own_children() -> BTreeSet<u32> {
        let mut kids = BTreeSet::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let path: PathBuf = task.unwrap().path().join("children");
            if let Ok(text) = std::fs::read_to_string(path) {
                kids.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        kids
    }
}
