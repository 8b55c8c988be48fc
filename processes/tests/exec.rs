//! Re-exec mode: this test binary re-executes itself to run registered functions (harness = false).
//!
//! `main` calls `Registry::init` first: in a child started by `exec` it runs the function and exits;
//! in the test run itself it returns and the checks below run, each a plain function.
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
        Channel, ChannelError, ExecOptions, Outcome, Reader, Registry, Writer, exec, parallel,
        process, sequence,
    };

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
        let err = parallel([
            exec::<_, u32>("panicker", ()).named("p"),
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
        // An unstarted exec process's ends poison their channel.
        let w = c.writer();
        drop(exec::<_, u64>(
            "summer",
            (Channel::<u64>::new().reader(), w),
        ));
        assert_eq!(r.read(), Err(ChannelError::Poisoned));
    }

    pub(crate) fn main() {
        Registry::new()
            .register("summer", summer)
            .register("describe_start", describe_start)
            .register("panicker", panicker)
            .register("exits", exits)
            .init();
        let checks: [(&str, fn()); 3] = [
            (
                "channel_ends_travel_as_arguments",
                check_channel_ends_travel_as_arguments,
            ),
            (
                "arguments_environment_and_directory",
                check_arguments_environment_and_directory,
            ),
            ("failures_are_reported", check_failures_are_reported),
        ];
        let mut failed = 0;
        for (name, check) in checks {
            match std::panic::catch_unwind(check) {
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
