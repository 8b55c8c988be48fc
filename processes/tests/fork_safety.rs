//! Fork safety and orphans (harness = false): the test binary re-runs itself in a *mode*
//! (`CSPNET_FORK_TEST_MODE`) to get a pristine program to fork from, print from, or kill.
//!
//! This process makes itself a child subreaper, so anything a mode program leaves behind is
//! re-parented here: after each check, every descendant must be gone (`waitpid` says `ECHILD`
//! within a deadline), and nothing of ours may be in /dev/shm.
//!
//! Linux only, like the processes backend itself: elsewhere `main` only says so.

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("the processes backend is Linux-only");
}

#[cfg(target_os = "linux")]
mod common;

#[cfg(target_os = "linux")]
mod linux {
    use super::common::assert_nothing_in_dev_shm;
    use cspnet_processes::{
        Channel, Outcome, Reader, Registry, Writer, exec, parallel, process, set_fork_warning,
        spawn,
    };
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, ExitStatus, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// Selects what a re-run of this binary does.
    const MODE: &str = "CSPNET_FORK_TEST_MODE";
    /// A line of the warning every check looks for.
    const WARNING: &str = "cspnet-processes: warning: a process is being forked";
    /// How long a mode program or a cleanup may take before the check fails.
    const DEADLINE: Duration = Duration::from_secs(60);

    // ---------------------------------------------------------------------------------------
    // The mode programs.

    /// Starts `sleep 1000` and `sh -c 'sleep 1000 & sleep 1000'`, unwaited for, with nothing
    /// but /dev/null as stdio: their pids.
    fn start_sleepers() -> [i32; 2] {
        let start = |cmd: &mut Command| {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("a sleeper starts")
                .id() as i32
        };
        [
            start(Command::new("sleep").arg("1000")),
            start(Command::new("sh").args(["-c", "sleep 1000 & sleep 1000"])),
        ]
    }

    /// Its own pid and its sleepers'.
    fn pid_and_sleepers() -> Vec<i32> {
        let mut pids = vec![std::process::id() as i32];
        pids.extend(start_sleepers());
        pids
    }

    /// Registered for `exec`: starts the sleepers, sends its own pid and theirs, then blocks.
    fn sleeper((pids, block): (Writer<Vec<i32>>, Reader<u8>)) -> Outcome<u8> {
        pids.write(pid_and_sleepers())?;
        block.read()
    }

    /// 16 threads print in a loop while processes that print are forked, 60 in all: every one
    /// finishes, and none holds the watchdog's pipe. With `quiet`, the program silences the fork
    /// warning first.
    fn storm(quiet: bool) {
        if quiet {
            set_fork_warning(false);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let printers: Vec<_> = (0..16)
            .map(|t| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        println!("printer {t} line {n}");
                        eprintln!("printer {t} line {n}");
                        n += 1;
                    }
                })
            })
            .collect();
        // The watchdog's pipe, once the first round has started it: no child may hold it.
        let mut pipe = None::<String>;
        for round in 0..3 {
            let out = parallel((0..20u32).map(|k| {
                let pipe = pipe.clone();
                process(move || {
                    println!("child {k} of round {round}");
                    eprintln!("child {k} of round {round}");
                    let me = std::process::id() as i32;
                    let held = pipe.is_some_and(|p| fds_of(me).iter().any(|(_, t)| *t == p));
                    assert!(!held, "child {k} holds the watchdog's pipe");
                    Ok(k)
                })
            }))
            .expect("every child finishes");
            assert_eq!(out, (0..20).map(Ok).collect::<Vec<_>>());
            let watchdog = watchdog_of(std::process::id() as i32).expect("a watchdog");
            pipe = fds_of(watchdog).first().map(|(_, t)| t.clone());
            assert!(pipe.as_ref().is_some_and(|p| p.starts_with("pipe:")));
        }
        stop.store(true, Ordering::Relaxed);
        for p in printers {
            p.join().unwrap();
        }
        let _ = std::io::stdout().flush();
        eprintln!("storm done");
    }

    /// Registered for `exec`: gives its argument back.
    fn echo(v: u32) -> Outcome<u32> {
        Ok(v)
    }

    /// Forks from the main thread only, while no thread but cspnet's own runs (one registered as
    /// such; an `exec` starts one to accept its child's hello).
    fn single() {
        // A thread registered as cspnet's own does not count.
        let (stop, stopped) = mpsc::channel::<()>();
        let (ready, registered) = mpsc::channel::<()>();
        let own = std::thread::spawn(move || {
            cspnet_processes::__register_own_thread();
            ready.send(()).unwrap();
            let _ = stopped.recv();
        });
        registered.recv().unwrap();
        let out = parallel((0..20u32).map(|k| process(move || Ok(k)))).unwrap();
        assert_eq!(out, (0..20).map(Ok).collect::<Vec<_>>());
        drop(stop);
        own.join().unwrap();
        for k in 0..5u32 {
            let out = parallel([exec::<_, u32>("echo", k), process(move || Ok(k + 1))]).unwrap();
            assert_eq!(out, vec![Ok(k), Ok(k + 1)]);
        }
        eprintln!("single done");
    }

    /// Spawns a process from a helper thread, lets that thread end, joins from this one: the
    /// join's result. If the child `dies` with the thread that forked it (the orphan guard off,
    /// or a forked process's child), waits (observing /proc) until it is dead first.
    fn thread_ends(dies: bool) -> String {
        let value = Channel::<u32>::with_buffer(1);
        let pid = Channel::<i32>::with_buffer(1);
        let (vr, vw) = (value.reader(), value.writer());
        let (pr, pw) = (pid.reader(), pid.writer());
        let helper = std::thread::Builder::new()
            .name("starter".into())
            .spawn(move || {
                let handle = spawn([process(move || {
                    pw.write(std::process::id() as i32)?;
                    vr.read()
                })
                .named("orphaned")]);
                let pid = pr.read().unwrap();
                (handle, pid)
            })
            .unwrap();
        let (handle, child) = helper.join().unwrap();
        if dies {
            // Its watcher reaps it at once, so it is seen as a zombie only briefly, if at all.
            wait_until(&format!("child {child} is dead"), || {
                std::fs::read_to_string(format!("/proc/{child}/stat"))
                    .map(|s| {
                        s.rsplit(')')
                            .next()
                            .unwrap_or("")
                            .trim_start()
                            .starts_with('Z')
                    })
                    .unwrap_or(true)
            });
        }
        let result = |joined: Result<Vec<_>, cspnet_processes::ProcessError>| match joined {
            Ok(out) => format!("RESULT ok {out:?}"),
            Err(e) => format!("RESULT err {:?}", e.first().cause()),
        };
        if dies {
            // A dead child's channels are poisoned by its watcher, which reports it after that
            // (it may be gone from /proc a moment before): joined first, the write must fail.
            let joined = result(handle.join());
            let wrote = vw.write(42);
            assert!(wrote.is_err(), "{wrote:?}");
            joined
        } else {
            vw.write(42).unwrap();
            result(handle.join())
        }
    }

    /// A forked child, a child that it forks, and an exec'd child each start sleepers and block;
    /// prints every pid on one line, then waits for ever (the test kills it).
    fn supervise() {
        let pids = Channel::<Vec<i32>>::with_buffer(3);
        let block = Channel::<u8>::new();
        let (pw, br) = (pids.writer(), block.reader());
        let (pw2, br2) = (pw.clone(), br.clone());
        let (pw3, br3) = (pw.clone(), br.clone());
        let pr = pids.reader();
        let handle = spawn([
            process(move || {
                let nested = spawn([process(move || {
                    pw3.write(pid_and_sleepers())?;
                    br3.read()
                })
                .named("nested")]);
                pw.write(pid_and_sleepers())?;
                let _ = br.read();
                nested
                    .join()
                    .map(|_| 0)
                    .map_err(|_| cspnet_processes::ChannelError::Poisoned)
            })
            .named("forked"),
            exec::<_, u8>("sleeper", (pw2, br2)).named("exec'd"),
        ]);
        let all: Vec<String> = (0..3)
            .flat_map(|_| pr.read().unwrap())
            .map(|p| p.to_string())
            .collect();
        println!("PIDS {}", all.join(" "));
        std::io::stdout().flush().unwrap();
        let _ = handle.join();
        unreachable!("the test kills this program");
    }

    /// A child starts sleepers and returns their pids without waiting for them; the program
    /// prints them and exits normally.
    fn leave_behind() {
        let out = parallel([process(|| Ok(start_sleepers().to_vec()))]).unwrap();
        let pids: Vec<String> = out[0].clone().unwrap().iter().map(i32::to_string).collect();
        println!("PIDS {}", pids.join(" "));
    }

    // ---------------------------------------------------------------------------------------
    // Observing the OS.

    /// Polls `done` until it holds; panics after [`DEADLINE`].
    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < DEADLINE, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every descendant of this process is gone: those re-parented here are reaped, and
    /// `waitpid` ends with `ECHILD` (no child, running or zombie). If not, kills them and fails.
    fn assert_no_descendants() {
        let start = Instant::now();
        let gone = || {
            loop {
                let mut status = 0;
                // SAFETY: a non-blocking waitpid for any child, with a valid status pointer.
                let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if r > 0 {
                    continue; // reaped one; look again
                }
                return r == -1
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD);
            }
        };
        while !gone() {
            if start.elapsed() > DEADLINE {
                let left = descendants_of(std::process::id() as i32);
                for &pid in &left {
                    // SAFETY: kill on a descendant that should not exist any more.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                panic!("left running: {left:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Where `pid`'s descriptors point, by number.
    /// (Nothing if it has just ended.)
    fn fds_of(pid: i32) -> Vec<(u32, String)> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return Vec::new();
        };
        let mut fds: Vec<(u32, String)> = dir
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str()?.parse().ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                Some((n, target.display().to_string()))
            })
            .collect();
        fds.sort();
        fds
    }

    /// The child of `parent` that is its watchdog, if any: named `cspnet-watchdog` (until it
    /// becomes a shell) or with a command line that starts so (once it is one).
    fn watchdog_of(parent: i32) -> Option<i32> {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
            let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let argv0 = cmdline.split(|&b| b == 0).next()?;
            let named = name == "cspnet-watchdog" || argv0 == b"cspnet-watchdog";
            (named && ppid == parent).then_some(pid)
        })
    }

    fn is_running(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    // ---------------------------------------------------------------------------------------
    // The checks.

    fn mode_command(mode: &str) -> Command {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(MODE, mode)
            .env_remove("CSPNET_FORK_WARNING")
            .env_remove("CSPNET_ORPHAN_GUARD")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a mode program to its end (failing after [`DEADLINE`], killing it): its status,
    /// stdout and stderr.
    fn run_mode(mut cmd: Command) -> (ExitStatus, String, String) {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut o = String::new();
            let mut e = String::new();
            let drain_out = std::thread::spawn(move || {
                let _ = out.read_to_string(&mut o);
                o
            });
            let _ = err.read_to_string(&mut e);
            let o = drain_out.join().unwrap();
            let _ = tx.send((child.wait().unwrap(), o, e));
        });
        match rx.recv_timeout(DEADLINE) {
            Ok(done) => {
                reader.join().unwrap();
                done
            }
            Err(_) => {
                // SAFETY: kill on our own child's pid, which has not been reaped (it hangs).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reader.join().unwrap();
                panic!("the mode program hung (killed it after {DEADLINE:?})");
            }
        }
    }

    fn warnings_in(stderr: &str) -> usize {
        stderr.lines().filter(|l| l.contains(WARNING)).count()
    }

    /// The issue's hang: 16 threads printing while 20 processes that print are forked; all finish
    /// (three rounds), and the program is warned once, with `exec` named as the remedy.
    fn check_forks_while_threads_print_all_finish_and_warn_once() {
        let mut cmd = mode_command("storm");
        cmd.stdout(Stdio::null());
        let (status, _, err) = run_mode(cmd);
        let warning = err.lines().find(|l| l.contains(WARNING)).unwrap_or("");
        assert!(status.success(), "{status}; stderr ends:\n{}", tail(&err));
        assert!(err.contains("storm done"), "stderr ends:\n{}", tail(&err));
        assert_eq!(warnings_in(&err), 1, "the warning, once:\n{}", tail(&err));
        assert!(warning.contains("`exec`"), "{warning}");
        assert!(warning.contains("16 other thread(s)"), "{warning}");
        assert!(warning.contains("CSPNET_FORK_WARNING=off"), "{warning}");
        assert!(warning.contains("set_fork_warning(false)"), "{warning}");
        assert_no_descendants();
        assert_nothing_in_dev_shm();
    }

    /// The warning's two opt-outs work, and a program whose only thread forks is not warned.
    fn check_the_warning_can_be_silenced_and_is_not_given_without_threads() {
        let mut by_env = mode_command("storm");
        by_env.env("CSPNET_FORK_WARNING", "off");
        let by_api = mode_command("storm-quiet");
        for (how, cmd) in [("environment", by_env), ("api", by_api)] {
            let (status, _, err) = run_mode(cmd);
            assert!(status.success(), "{how}: {status}:\n{}", tail(&err));
            assert_eq!(warnings_in(&err), 0, "{how}: warned anyway");
            assert!(err.contains("storm done"), "{how}");
        }
        let (status, _, err) = run_mode(mode_command("single"));
        assert!(status.success(), "{status}; {err}");
        assert_eq!(err.trim(), "single done", "only the done line on stderr");
        assert_no_descendants();
        assert_nothing_in_dev_shm();
    }

    /// A process spawned from a thread that then ends: with the orphan guard (the default) it
    /// survives and main joins it; without, or when a forked process started it, it dies with
    /// that thread, and the report says so.
    fn check_a_spawn_outlives_the_thread_that_started_it() {
        let (status, out, err) = run_mode(mode_command("thread-ends"));
        assert!(status.success(), "{status}; {err}");
        assert_eq!(out.trim(), "RESULT ok [Ok(42)]", "{err}");

        let mut off = mode_command("thread-ends");
        off.env("CSPNET_ORPHAN_GUARD", "off");
        for (how, cmd) in [
            ("guard off", off),
            ("nested", mode_command("nested-thread-ends")),
        ] {
            let (status, out, err) = run_mode(cmd);
            assert!(status.success(), "{how}: {status}; {err}");
            let line = out.trim();
            assert!(
                line.starts_with("RESULT err Crashed"),
                "{how}: {line}; {err}"
            );
            assert!(
                line.contains("killed by signal 9 (SIGKILL)"),
                "{how}: {line}"
            );
            assert!(
                line.contains(r#"the thread that started it (\"starter\", tid "#),
                "{how}: {line}"
            );
            assert!(line.contains("ended before it was joined"), "{how}: {line}");
        }
        assert_no_descendants();
        assert_nothing_in_dev_shm();
    }

    /// `kill -9` of a supervising program: its forked child, that child's child, its exec'd child
    /// and everything they started (`sleep`, `sh -c 'sleep & sleep'`) die; none keeps a
    /// descriptor of ours, and one watchdog serves the forked sub-network too.
    fn check_kill_9_of_the_supervisor_leaves_nothing_running() {
        let mut child = KillOnDrop(
            mode_command("supervise")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        );
        let supervisor = child.0.id() as i32;
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(DEADLINE).unwrap_or_default();
        let pids: Vec<i32> = line
            .strip_prefix("PIDS ")
            .unwrap_or_else(|| panic!("no pids from the supervisor: {line:?}"))
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        // Three cspnet processes, each followed by its sleep and its sh.
        assert_eq!(pids.len(), 9, "{line}");
        let cspnet: Vec<i32> = pids.iter().copied().step_by(3).collect();
        for &pid in &pids {
            assert!(is_running(pid), "{pid} should be running");
        }

        // Descriptors: the watchdog keeps only its pipe's read end; the write end is the
        // supervisor's alone; what the children started holds only stdio.
        let watchdog = watchdog_of(supervisor).expect("the supervisor has a watchdog");
        for &pid in &cspnet {
            assert_eq!(watchdog_of(pid), None, "{pid} has a watchdog of its own");
        }
        let wd_fds = fds_of(watchdog);
        assert_eq!(wd_fds.len(), 1, "the watchdog holds {wd_fds:?}");
        let pipe = wd_fds[0].1.clone();
        assert!(pipe.starts_with("pipe:"), "{pipe}");
        assert!(
            fds_of(supervisor).iter().any(|(_, t)| *t == pipe),
            "the supervisor holds the write end"
        );
        for &pid in &pids {
            let fds = fds_of(pid);
            assert!(
                !fds.iter().any(|(_, t)| *t == pipe),
                "{pid} inherited the watchdog's pipe: {fds:?}"
            );
        }
        // What the children started holds nothing but stdio and what this test was given
        // itself (a harness's or jobserver's pipe): no segment, socket or pipe of cspnet's.
        let ours: Vec<String> = fds_of(std::process::id() as i32)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        // A shell's child caught between its fork and its exec holds the shell's descriptors for
        // a moment: poll until the tree settles.
        let start = Instant::now();
        loop {
            let started: Vec<i32> = descendants_of(supervisor)
                .into_iter()
                .filter(|&p| p != watchdog && !cspnet.contains(&p))
                .collect();
            // Thrice: a sleep, a sh, and the sh's background sleep (and its other sleep, unless
            // the shell execs that one in its own place).
            let settled = started.len() >= 9;
            let foreign: Vec<(i32, Vec<(u32, String)>)> = started
                .into_iter()
                .map(|pid| {
                    let fds = fds_of(pid)
                        .into_iter()
                        .filter(|(n, t)| *n > 2 && t != "/dev/null" && !ours.contains(t))
                        .collect();
                    (pid, fds)
                })
                .filter(|(_, fds): &(i32, Vec<_>)| !fds.is_empty())
                .collect();
            if settled && foreign.is_empty() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "started {} processes; inherited: {foreign:?}",
                if settled { "enough" } else { "too few" }
            );
            std::thread::sleep(Duration::from_millis(5));
        }

        // SAFETY: kill on our own child's pid.
        assert_eq!(unsafe { libc::kill(supervisor, libc::SIGKILL) }, 0);
        let status = child.0.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert_no_descendants();
        for &pid in &pids {
            assert!(!is_running(pid), "{pid} still runs");
        }
        assert_nothing_in_dev_shm();
    }

    /// Kills and reaps a mode program that a failed check leaves running.
    struct KillOnDrop(std::process::Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Ok(None) = self.0.try_wait() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }

    /// A program that exits normally while a child's `sleep`s still run: they die with it.
    fn check_a_normal_exit_leaves_nothing_running() {
        let (status, out, err) = run_mode(mode_command("leave-behind"));
        assert!(status.success(), "{status}; {err}");
        let pids: Vec<i32> = out
            .trim()
            .strip_prefix("PIDS ")
            .unwrap_or_else(|| panic!("no pids: {out:?} {err:?}"))
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 2);
        assert_no_descendants();
        for &pid in &pids {
            assert!(!is_running(pid), "{pid} still runs");
        }
        assert_nothing_in_dev_shm();
    }

    /// Every process below `root` (by parent pid), found in /proc.
    fn descendants_of(root: i32) -> Vec<i32> {
        let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                        let rest = stat.rsplit_once(") ")?.1;
                        Some((pid, rest.split_whitespace().nth(1)?.parse().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut found = vec![root];
        let mut i = 0;
        while i < found.len() {
            let p = found[i];
            found.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
            i += 1;
        }
        found.remove(0);
        found
    }

    /// The end of a mode program's stderr, without the printers' and children's noise.
    fn tail(s: &str) -> String {
        let notes: Vec<&str> = s
            .lines()
            .filter(|l| !l.starts_with("printer ") && !l.starts_with("child "))
            .collect();
        notes[notes.len().saturating_sub(20)..].join("\n")
    }

    pub(crate) fn main() {
        Registry::new()
            .register("sleeper", sleeper)
            .register("echo", echo)
            .init();
        if let Some(mode) = std::env::var_os(MODE) {
            match mode.to_str().unwrap_or("") {
                "storm" => storm(false),
                "storm-quiet" => storm(true),
                "single" => single(),
                "thread-ends" => {
                    let off = std::env::var_os("CSPNET_ORPHAN_GUARD").is_some_and(|v| v == "off");
                    println!("{}", thread_ends(off));
                }
                "nested-thread-ends" => {
                    let out = parallel([process(|| Ok(thread_ends(true)))]).unwrap();
                    println!("{}", out[0].clone().unwrap());
                }
                "supervise" => supervise(),
                "leave-behind" => leave_behind(),
                other => panic!("unknown mode {other:?}"),
            }
            return;
        }
        // Whatever a mode program leaves behind is re-parented here, where the checks see it.
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes a flag.
        let subreaper = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
        assert_eq!(subreaper, 0, "cannot become a subreaper");
        let checks: [(&str, fn()); 5] = [
            (
                "forks_while_threads_print_all_finish_and_warn_once",
                check_forks_while_threads_print_all_finish_and_warn_once,
            ),
            (
                "the_warning_can_be_silenced_and_is_not_given_without_threads",
                check_the_warning_can_be_silenced_and_is_not_given_without_threads,
            ),
            (
                "a_spawn_outlives_the_thread_that_started_it",
                check_a_spawn_outlives_the_thread_that_started_it,
            ),
            (
                "kill_9_of_the_supervisor_leaves_nothing_running",
                check_kill_9_of_the_supervisor_leaves_nothing_running,
            ),
            (
                "a_normal_exit_leaves_nothing_running",
                check_a_normal_exit_leaves_nothing_running,
            ),
        ];
        let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
        let mut failed = 0;
        let mut ran = 0;
        for (name, check) in checks {
            if only.as_deref().is_some_and(|o| !name.contains(o)) {
                continue;
            }
            ran += 1;
            match std::panic::catch_unwind(check) {
                Ok(()) => println!("test {name} ... ok"),
                Err(_) => {
                    println!("test {name} ... FAILED");
                    failed += 1;
                }
            }
        }
        println!("{} passed, {failed} failed", ran - failed);
        if failed > 0 {
            std::process::exit(1);
        }
    }
}
