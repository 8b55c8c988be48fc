//! The deadlock detector's setting is program-wide (`set_deadlock_delay`, `CSPNET_DEADLOCK`), so it
//! is tested in a binary of its own: switched off, a deadlocked network hangs until something
//! else ends it; with a short delay it is reported at once; the environment variable is read as
//! documented (each value in a child run of this binary).

use cspnet_threads::{
    Cause, Channel, ChannelError, Spawned, deadlock_delay, parallel, process, set_deadlock_delay,
    spawn,
};
use std::process::Command;
use std::time::{Duration, Instant};

/// Set in a child run: print the delay read from `CSPNET_DEADLOCK` and stop.
const CHILD: &str = "CSPNET_TEST_DEADLOCK_SETTING_CHILD";

/// Two processes each waiting to read what the other would write; `x` ends it when poisoned.
fn cross_wait() -> (Vec<cspnet_threads::Process<u32>>, Channel<u32>) {
    let (x, y) = (Channel::<u32>::named("x"), Channel::<u32>::named("y"));
    let (xr, xw, yr, yw) = (x.reader(), x.writer(), y.reader(), y.writer());
    let procs = vec![
        process(move || {
            let v = xr.read()?;
            yw.write(v)?;
            Ok(v)
        })
        .named("a"),
        process(move || {
            let v = yr.read()?;
            xw.write(v)?;
            Ok(v)
        })
        .named("b"),
    ];
    (procs, x)
}

#[test]
fn off_hangs_until_poisoned_and_a_short_delay_reports_at_once() {
    if std::env::var_os(CHILD).is_some() {
        println!("delay: {:?}", deadlock_delay());
        return;
    }

    set_deadlock_delay(None);
    assert_eq!(deadlock_delay(), None);
    let (procs, x) = cross_wait();
    let handle: Spawned<u32> = spawn(procs);
    // The join runs on another thread, so the network is complete (its starter is joining).
    let joiner = std::thread::spawn(move || handle.join());
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert!(!joiner.is_finished(), "reported although detection is off");
        std::thread::sleep(Duration::from_millis(20));
    }
    x.poison();
    let out = joiner
        .join()
        .expect("the joining thread did not panic")
        .unwrap();
    assert_eq!(
        out,
        vec![Err(ChannelError::Poisoned), Err(ChannelError::Poisoned)]
    );

    set_deadlock_delay(Some(Duration::from_millis(50)));
    let (procs, x) = cross_wait();
    drop(x);
    let began = Instant::now();
    let err = parallel(procs).unwrap_err();
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    assert!(matches!(err.first().cause(), Cause::Deadlock(_)), "{err}");
}

#[test]
fn the_environment_variable_is_read_as_documented() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let delay_with = |value: &str| {
        let out = Command::new(&exe)
            .args([
                "off_hangs_until_poisoned_and_a_short_delay_reports_at_once",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .env("CSPNET_DEADLOCK", value)
            .output()
            .expect("the child ran");
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = stdout
            .lines()
            .find(|l| l.starts_with("delay: "))
            .unwrap_or_else(|| panic!("no delay line in {stdout}"))
            .to_owned();
        (line, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(delay_with("off").0, "delay: None");
    assert_eq!(delay_with(" OFF ").0, "delay: None");
    assert_eq!(delay_with("120").0, "delay: Some(120ms)");
    let (line, stderr) = delay_with("soon");
    assert_eq!(line, "delay: Some(300ms)");
    assert!(stderr.contains("CSPNET_DEADLOCK=\"soon\""), "{stderr}");
}
