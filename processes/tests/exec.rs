//! Re-exec mode: this test binary re-executes itself to run registered functions (harness = false).
//!
//! `main` calls `Registry::init` first: in a child started by `exec` it runs the function and exits;
//! in the test run itself it returns and the checks below run, each a plain function, each followed
//! by a check that nothing was left behind (no child process, no zombie, no extra thread, no
//! cspnet file in `/dev/shm`).
//!
//! The binary has three more roles, chosen before `init`: with `--probe` it prints its open
//! descriptors and `CSPNET_*` variables (the grandchild whose inheritance is checked); with
//! `CSPNET_EXEC_TEST_HANG` set it hangs before `init` (a child that never starts); with
//! `--replaced-self` (after `init`) it replaces its own file on disk, then starts an exec child.
//!
//! Linux only, like the processes backend itself: elsewhere `main` only says so.

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("the processes backend is Linux-only");
}

#[cfg(target_os = "linux")]
mod linux {
    use cspnet_core::Cause;
    use cspnet_processes::{
        Channel, ChannelError, ExecFn, ExecOptions, Outcome, Reader, Registry, Supervisor, Writer,
        exec, parallel, process, sequence,
    };
    use std::collections::BTreeSet;
    use std::io::{Read, Seek};
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// Set in a child's environment: it hangs before `Registry::init`.
    const HANG: &str = "CSPNET_EXEC_TEST_HANG";
    /// The variables that start an exec child, which nothing else may see.
    const BOOT_VARS: [&str; 2] = ["CSPNET_EXEC_SERVER", "CSPNET_SHM_FD"];

    /// The descriptors the test run had when it started (inherited from whoever ran it), as
    /// "fd -> target" lines: a grandchild may have these, and 0, 1, 2, and nothing else.
    static BASELINE: OnceLock<BTreeSet<String>> = OnceLock::new();
    /// The orphan guard's watchdog process, our one child between checks.
    static WATCHDOG: OnceLock<Vec<u32>> = OnceLock::new();

    /// The open descriptors of this process as "fd -> target" lines, without the one that lists
    /// them.
    fn own_fds() -> BTreeSet<String> {
        let mut fds = BTreeSet::new();
        for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
            let entry = entry.unwrap();
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue; // the directory's own descriptor, closed by now
            };
            let target = target.display().to_string();
            if target.starts_with("/proc/") && target.ends_with("/fd") {
                continue;
            }
            fds.insert(format!(
                "{} -> {target}",
                entry.file_name().to_string_lossy()
            ));
        }
        fds
    }

    /// `--probe`: prints what this process inherited: "fd N -> TARGET" and "env K=V" lines.
    fn probe() -> ! {
        for fd in own_fds() {
            println!("fd {fd}");
        }
        for (k, v) in std::env::vars() {
            if k.starts_with("CSPNET_") {
                println!("env {k}={v}");
            }
        }
        std::process::exit(0);
    }

    /// Starts a grandchild probe with plain `std::process::Command` and returns what it printed.
    fn run_probe() -> String {
        let out = Command::new("/proc/self/exe")
            .arg("--probe")
            .stderr(Stdio::inherit())
            .output()
            .expect("the probe runs");
        assert!(out.status.success(), "the probe failed: {:?}", out.status);
        String::from_utf8(out.stdout).unwrap()
    }

    /// Asserts that a probe saw neither the segment's descriptor nor any descriptor the test run
    /// did not start with (beyond stdio), nor the bootstrap variables.
    fn assert_inherited_nothing(who: &str, report: &str) {
        let baseline = BASELINE.get().expect("main records the baseline");
        assert!(
            report.contains("fd 1 -> "),
            "{who}: not a probe report:\n{report}"
        );
        for line in report.lines() {
            if let Some(fd) = line.strip_prefix("fd ") {
                assert!(
                    !fd.contains("memfd:cspnet"),
                    "{who} inherited the segment: {fd}"
                );
                let stdio = ["0 ", "1 ", "2 "].iter().any(|n| fd.starts_with(n));
                assert!(
                    stdio || baseline.contains(fd),
                    "{who} inherited a descriptor: {fd}\n{report}"
                );
            } else if let Some(var) = line.strip_prefix("env ") {
                let name = var.split('=').next().unwrap();
                assert!(!BOOT_VARS.contains(&name), "{who} inherited {var}");
            }
        }
    }

    /// Whether `pid` is gone: reaped, or (its number reused) a live process that is not our child.
    fn assert_gone(pid: u32) {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return;
        };
        // "pid (comm) state ppid ...": the comm may hold spaces, so split after its ')'.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let mut fields = rest.split(' ');
        let state = fields.next().unwrap();
        let ppid: u32 = fields.next().unwrap().parse().unwrap();
        assert!(
            state != "Z" && ppid != std::process::id(),
            "child {pid} is left behind (state {state})"
        );
    }

    /// Our child processes (any state, zombies included).
    fn children() -> Vec<u32> {
        let me = std::process::id();
        let mut kids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if WATCHDOG.get().is_some_and(|w| w.contains(&pid)) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            if rest.split(' ').nth(1).and_then(|p| p.parse().ok()) == Some(me) {
                kids.push(pid);
            }
        }
        kids
    }

    /// After each check: no descriptor open but the run's own and the segment's, none of them
    /// inherited by a program started now, no child process (so no zombie), no thread but main,
    /// no cspnet file in /dev/shm. Threads and processes are observed through /proc, polled until
    /// a deadline.
    fn assert_nothing_left() {
        let baseline = BASELINE.get().expect("main records the baseline");
        let open: Vec<String> = own_fds()
            .difference(baseline)
            .filter(|fd| !fd.contains("memfd:cspnet"))
            .cloned()
            .collect();
        assert!(open.is_empty(), "descriptors left open: {open:?}");
        assert_inherited_nothing("a program started after the check", &run_probe());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let kids = children();
            let threads = std::fs::read_dir("/proc/self/task").unwrap().count();
            if kids.is_empty() && threads == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "left behind: children {kids:?}, {threads} threads"
            );
            std::thread::yield_now();
        }
        let shm: Vec<String> = std::fs::read_dir("/dev/shm")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains("cspnet"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(shm.is_empty(), "cspnet files in /dev/shm: {shm:?}");
    }

    /// Sums what arrives on `input` and sends the total on `output`, returning the count.
    fn summer((input, output): (Reader<u64>, Writer<u64>)) -> Outcome<u64> {
        let mut sum = 0;
        let mut n = 0;
        for v in &input {
            sum += v?;
            n += 1;
        }
        output.write(sum)?;
        Ok(n)
    }

    /// Reports what the child was started with: extra arguments, an environment variable, its
    /// working directory.
    fn describe_start(var: String) -> Outcome<(Vec<String>, Option<String>, String)> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let cwd = std::env::current_dir().unwrap().display().to_string();
        Ok((args, std::env::var(&var).ok(), cwd))
    }

    fn panicker(_: ()) -> Outcome<u32> {
        panic!("re-executed and gave up");
    }

    fn exits(code: i32) -> Outcome<u32> {
        std::process::exit(code);
    }

    fn double(x: u32) -> Outcome<u32> {
        Ok(2 * x)
    }

    fn triple(x: u32) -> Outcome<u32> {
        Ok(3 * x)
    }

    /// Registered and started through its typed handle.
    const TRIPLE: ExecFn<u32, u32> = ExecFn::new("triple", triple);

    /// The child's whole environment.
    fn environment(_: ()) -> Outcome<Vec<(String, String)>> {
        Ok(std::env::vars().collect())
    }

    /// Prints `what` on stdout and stderr; returns the child's pid.
    fn shout(what: String) -> Outcome<u32> {
        println!("out: {what}");
        eprintln!("err: {what}");
        Ok(std::process::id())
    }

    /// Runs a grandchild probe; returns its report and this child's pid.
    fn probe_grandchild(_: ()) -> Outcome<(String, u32)> {
        Ok((run_probe(), std::process::id()))
    }

    /// Starts an exec child of its own that runs a probe: the segment still reaches a child that
    /// asks for it, after its parent took the variable away and marked the descriptor.
    fn nested_probe(_: ()) -> Outcome<(String, u32)> {
        let out = sequence([exec::<_, (String, u32)>("probe_grandchild", ())]).unwrap();
        out.into_iter().next().unwrap()
    }

    /// Writes 1, then waits at a gate that never opens (until it is killed).
    fn writes_then_waits((out, gate): (Writer<u32>, Reader<u32>)) -> Outcome<u32> {
        out.write(1)?;
        gate.read()
    }

    /// A supervised exec child that is killed retires the ends it held, as a forked one does:
    /// a channel shared with a healthy process keeps working, and one whose only reader it was
    /// retires rather than poisons.
    fn check_a_killed_supervised_exec_child_retires_its_ends() {
        let (out, gate) = (Channel::<u32>::with_buffer(2), Channel::<u32>::new());
        let (mine, gate_w, r) = (out.writer(), gate.writer(), out.reader());
        let mut sup = Supervisor::<u32>::new();
        let id = sup
            .start(
                exec::<_, u32>("writes_then_waits", (out.writer(), gate.reader())).named("waiter"),
            )
            .unwrap();
        drop((out, gate));
        assert_eq!(
            r.read(),
            Ok(1),
            "the child has started and waits at the gate"
        );
        sup.kill(id).unwrap();
        let exit = sup.next_exit().unwrap();
        assert!(
            matches!(&exit.outcome, Err(Cause::Crashed(m)) if m.contains("SIGKILL")),
            "{exit}"
        );
        mine.write(2).unwrap();
        assert_eq!(r.read(), Ok(2), "the shared channel is not poisoned");
        assert_eq!(
            gate_w.write(3),
            Err(ChannelError::Retired),
            "its last reader retired"
        );
    }

    fn check_channel_ends_travel_as_arguments() {
        let input = Channel::<u64>::new();
        let output = Channel::<u64>::with_buffer(1);
        let w = input.writer();
        let r = output.reader();
        let out = parallel([
            exec::<_, u64>("summer", (input.reader(), output.writer())).named("summer"),
            process(move || {
                for i in 1..=100 {
                    w.write(i)?;
                }
                Ok(0)
            }),
        ])
        .unwrap();
        assert_eq!(out, vec![Ok(100), Ok(0)]);
        assert_eq!(r.read(), Ok(5050));
        assert_eq!(r.read(), Err(ChannelError::Retired), "the child's end left");
    }

    fn check_arguments_environment_and_directory() {
        let dir = std::env::temp_dir();
        let out = sequence([exec::<_, (Vec<String>, Option<String>, String)>(
            "describe_start",
            "CSPNET_EXEC_TEST_VAR".to_string(),
        )
        .arg("--flag")
        .arg("value")
        .env("CSPNET_EXEC_TEST_VAR", "set-by-parent")
        .current_dir(&dir)])
        .unwrap();
        let (args, var, cwd) = out[0].clone().unwrap();
        assert_eq!(args, vec!["--flag".to_string(), "value".to_string()]);
        assert_eq!(var.as_deref(), Some("set-by-parent"));
        assert_eq!(
            std::fs::canonicalize(cwd).unwrap(),
            std::fs::canonicalize(dir).unwrap()
        );
    }

    fn check_failures_are_reported() {
        let c = Channel::<u64>::new();
        let r = c.reader();
        // The panic's message goes to this file, not to the test run's stderr.
        let mut stderr = tempfile::tempfile().unwrap();
        let err = parallel([
            exec::<_, u32>("panicker", ())
                .named("p")
                .stderr(stderr.try_clone().unwrap()),
            exec::<_, u32>("exits", 4).named("e"),
            exec::<_, u32>("not-registered", ()).named("n"),
        ])
        .unwrap_err();
        let causes: Vec<(&str, &Cause)> = err
            .failures()
            .iter()
            .map(|f| (f.process(), f.cause()))
            .collect();
        assert_eq!(causes.len(), 3, "{err}");
        assert_eq!(
            causes[0],
            ("p", &Cause::Panicked("re-executed and gave up".into()))
        );
        assert_eq!(
            causes[1],
            (
                "e",
                &Cause::Crashed("exited with status 4 before reporting".into())
            )
        );
        assert!(
            matches!(causes[2].1, Cause::CouldNotStart(m) if m.contains("not-registered")),
            "{err}"
        );
        let mut printed = String::new();
        stderr.rewind().unwrap();
        stderr.read_to_string(&mut printed).unwrap();
        assert!(printed.contains("re-executed and gave up"), "{printed}");
        // An unstarted exec process's ends poison their channel.
        let w = c.writer();
        drop(exec::<_, u64>(
            "summer",
            (Channel::<u64>::new().reader(), w),
        ));
        assert_eq!(r.read(), Err(ChannelError::Poisoned));
    }

    /// Item by item, nobody a cspnet process starts without asking sees the segment's descriptor
    /// or the bootstrap variables: not a program started by the parent, by a forked child, by an
    /// exec child, or by an exec child of an exec child.
    fn check_grandchildren_inherit_nothing() {
        let from_exec = sequence([exec::<_, (String, u32)>("probe_grandchild", ())]).unwrap();
        let from_fork = sequence([process(|| Ok((run_probe(), std::process::id())))]).unwrap();
        let nested = sequence([exec::<_, (String, u32)>("nested_probe", ())]).unwrap();
        let from_parent = run_probe();
        let (report, pid) = from_exec[0].clone().unwrap();
        assert_inherited_nothing("an exec child's grandchild", &report);
        assert_gone(pid);
        let (report, pid) = from_fork[0].clone().unwrap();
        assert_inherited_nothing("a forked child's grandchild", &report);
        assert_gone(pid);
        let (report, _) = nested[0].clone().unwrap();
        assert_inherited_nothing("a nested exec child's grandchild", &report);
        assert_inherited_nothing("the parent's child", &from_parent);
    }

    /// `exec::<A, R>` must name the registered function's types.
    fn check_mismatched_types_are_refused() {
        let ends = Channel::<u32>::new();
        let w = ends.writer();
        let out = Channel::<u64>::new();
        // Each start fails alone: the first failure of a group would not wait for the others.
        fn refusal<T>(out: Result<Vec<Outcome<T>>, cspnet_core::ProcessError>) -> String {
            match out.map(|_| ()).unwrap_err().failures()[0].cause() {
                Cause::CouldNotStart(why) => why.clone(),
                other => panic!("not a refusal: {other:?}"),
            }
        }
        assert_eq!(
            refusal(sequence([exec::<_, u32>("double", "ten".to_string())])),
            "function 'double' takes u32 and returns u32, but exec was called with String -> u32"
        );
        assert_eq!(
            refusal(sequence([exec::<_, String>("double", 5u32)])),
            "function 'double' takes u32 and returns u32, but exec was called with u32 -> String"
        );
        assert_eq!(
            refusal(sequence([exec::<_, u64>(
                "summer",
                (ends.reader(), out.writer())
            )])),
            "function 'summer' takes (Reader<Processes, u64>, Writer<Processes, u64>) and returns \
             u64, but exec was called with (Reader<Processes, u32>, Writer<Processes, u64>) -> u64"
        );
        // The ends sent to the function that did not run are poisoned, not left waiting.
        assert_eq!(w.write(1), Err(ChannelError::Poisoned));
        // A reference counts as what it refers to, and `&str` as `String`.
        let out = sequence([
            exec::<_, u32>("double", &7u32),
            exec::<_, u32>("shout", "quiet")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        ])
        .unwrap();
        assert_eq!(out[0], Ok(14));
        assert_gone(out[1].unwrap());
        // Through a typed handle the types are the function's (a String does not compile).
        assert_eq!(sequence([TRIPLE.exec(5)]).unwrap(), vec![Ok(15)]);
    }

    fn check_stdout_and_stderr_go_where_asked() {
        let mut out = tempfile::tempfile().unwrap();
        let mut err = tempfile::tempfile().unwrap();
        let pids = parallel([
            exec::<_, u32>("shout", "one".to_string())
                .stdout(out.try_clone().unwrap())
                .stderr(Stdio::null()),
            exec::<_, u32>("shout", "two".to_string())
                .stdout(Stdio::null())
                .stderr(err.try_clone().unwrap()),
        ])
        .unwrap();
        let (mut o, mut e) = (String::new(), String::new());
        out.rewind().unwrap();
        out.read_to_string(&mut o).unwrap();
        err.rewind().unwrap();
        err.read_to_string(&mut e).unwrap();
        assert_eq!(o, "out: one\n");
        assert_eq!(e, "err: two\n");
        for pid in pids {
            assert_gone(pid.unwrap());
        }
    }

    fn check_env_remove_and_env_clear() {
        assert!(
            std::env::var_os("PATH").is_some(),
            "the test run has a PATH"
        );
        let out = parallel([
            exec::<_, Vec<(String, String)>>("environment", ())
                .env("CSPNET_EXEC_TEST_A", "a")
                .env_remove("PATH"),
            exec::<_, Vec<(String, String)>>("environment", ())
                .env("CSPNET_EXEC_TEST_A", "a")
                .env_clear()
                .env("ONLY", "1"),
        ])
        .unwrap();
        let removed = out[0].clone().unwrap();
        assert!(removed.iter().all(|(k, _)| k != "PATH"), "{removed:?}");
        assert!(removed.contains(&("CSPNET_EXEC_TEST_A".into(), "a".into())));
        for (k, _) in &removed {
            assert!(!BOOT_VARS.contains(&k.as_str()), "the child kept {k}");
        }
        for (k, _) in std::env::vars() {
            if k != "PATH" {
                assert!(removed.iter().any(|(c, _)| *c == k), "{k} went missing");
            }
        }
        assert_eq!(out[1], Ok(vec![("ONLY".to_string(), "1".to_string())]));
    }

    fn check_a_child_that_hangs_before_init_is_killed() {
        let err = sequence([exec::<_, u32>("double", 1u32)
            .named("hangs")
            .env(HANG, "1")
            .start_timeout(Duration::from_millis(300))])
        .unwrap_err();
        let cause = err.failures()[0].cause();
        let Cause::CouldNotStart(why) = cause else {
            panic!("{err}");
        };
        assert!(
            why.contains("did not start within its start timeout of 300ms"),
            "{why}"
        );
        let pid = why
            .split("(pid ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no pid in: {why}"));
        assert_gone(pid);
    }

    /// The binary is replaced on disk while it runs: exec still starts the running one.
    fn check_exec_survives_a_replaced_binary() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("exec-copy");
        std::fs::copy("/proc/self/exe", &copy).unwrap();
        let out = Command::new(&copy).arg("--replaced-self").output().unwrap();
        assert!(
            out.status.success(),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "replaced-self: Ok(42)\n"
        );
    }

    /// `--replaced-self`: deletes this binary's file and puts a script that fails in its place,
    /// then starts an exec child.
    fn replaced_self() -> ! {
        let me = std::env::current_exe().unwrap();
        std::fs::remove_file(&me).unwrap();
        std::fs::write(&me, "#!/bin/sh\nexit 3\n").unwrap();
        std::fs::set_permissions(&me, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = sequence([exec::<_, u32>("double", 21u32)]);
        match out {
            Ok(out) => println!("replaced-self: {:?}", out[0]),
            Err(e) => println!("replaced-self: {e}"),
        }
        std::process::exit(0);
    }

    pub(crate) fn main() {
        if std::env::args().nth(1).as_deref() == Some("--probe") {
            probe();
        }
        if std::env::var_os(HANG).is_some() {
            // The fault under test: a child stuck before `init`. It gives up after a while so
            // that a parent without a start timeout sees an exit, not a hang.
            std::thread::sleep(Duration::from_secs(30));
        }
        Registry::new()
            .register("summer", summer)
            .register("describe_start", describe_start)
            .register("panicker", panicker)
            .register("exits", exits)
            .register("double", double)
            .register("writes_then_waits", writes_then_waits)
            .register("environment", environment)
            .register("shout", shout)
            .register("probe_grandchild", probe_grandchild)
            .register("nested_probe", nested_probe)
            .register_fn(TRIPLE)
            .init();
        if std::env::args().nth(1).as_deref() == Some("--replaced-self") {
            replaced_self();
        }
        // The first child starts the orphan guard's watchdog, which lives as long as the program:
        // its pipe and the watchdog itself belong to the baseline.
        parallel([process(|| Ok(()))]).unwrap();
        WATCHDOG.set(children()).unwrap();
        BASELINE.set(own_fds()).unwrap();
        let checks: [(&str, fn()); 10] = [
            (
                "a_killed_supervised_exec_child_retires_its_ends",
                check_a_killed_supervised_exec_child_retires_its_ends,
            ),
            (
                "channel_ends_travel_as_arguments",
                check_channel_ends_travel_as_arguments,
            ),
            (
                "arguments_environment_and_directory",
                check_arguments_environment_and_directory,
            ),
            ("failures_are_reported", check_failures_are_reported),
            (
                "grandchildren_inherit_nothing",
                check_grandchildren_inherit_nothing,
            ),
            (
                "mismatched_types_are_refused",
                check_mismatched_types_are_refused,
            ),
            (
                "stdout_and_stderr_go_where_asked",
                check_stdout_and_stderr_go_where_asked,
            ),
            ("env_remove_and_env_clear", check_env_remove_and_env_clear),
            (
                "a_child_that_hangs_before_init_is_killed",
                check_a_child_that_hangs_before_init_is_killed,
            ),
            (
                "exec_survives_a_replaced_binary",
                check_exec_survives_a_replaced_binary,
            ),
        ];
        let mut failed = 0;
        for (name, check) in checks {
            let run = || {
                check();
                assert_nothing_left();
            };
            match std::panic::catch_unwind(run) {
                Ok(()) => println!("test {name} ... ok"),
                Err(_) => {
                    println!("test {name} ... FAILED");
                    failed += 1;
                }
            }
        }
        println!("{} passed, {failed} failed", checks.len() - failed);
        if failed > 0 {
            std::process::exit(1);
        }
    }
}
