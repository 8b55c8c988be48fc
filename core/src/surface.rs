//! The names every backend exports, generated once: [`backend_surface!`](crate::backend_surface).

/// Exports the public API for one backend: `Channel<T>`, `Reader<T>`, `Writer<T>`, `Iter`,
/// `IntoIter`, `Alternation<'a, R>`, `Barrier`, `BarrierEnd`, `Process<T>`, `Spawned<T>`,
/// `Supervisor<T>`, `Farm<J, R>`, `FarmRun<J, R>`, `WorkerEnds<J, R>` as aliases of this crate's types
/// for the backend's engine, the free functions `process`, `parallel`, `sequence`, `spawn`, `io`
/// and `current_process_id`, and the shared error types. A backend's `lib.rs` says
///
/// ```ignore
/// cspnet_core::backend_surface!(Threads, cspnet_threads);
/// ```
///
/// after defining its engine type (`Threads`), so `use cspnet::threads as csp;` code sees the same
/// names on every backend, and generic code sees one type per name.
#[macro_export]
macro_rules! backend_surface {
    ($engine:ident, $krate:ident) => {
        pub use $crate::{
            Backend, Blocked, BufferError, Carries, CarriesFarm, Cause, ChannelError, Deadlock,
            ErrorText, Exit, Failure, FarmError, FarmReport, HeldEnd, JobContext, JobFailure,
            JobResult, KillError, Outcome, ProcessError, ProcessId, Wait, deadlock_delay,
            set_deadlock_delay,
        };

        #[doc = concat!("This backend's engine, under the name every backend uses: generic code \
            instantiated for this backend names it `", stringify!($krate), "::Engine`.")]
        ///
        /// ```
        #[doc = concat!("fn backend_name<B: ", stringify!($krate), "::Backend>() -> &'static str { B::NAME }")]
        #[doc = concat!("assert!(!backend_name::<", stringify!($krate), "::Engine>().is_empty());")]
        /// ```
        pub type Engine = $engine;

        #[doc = concat!("An any-to-any channel of this backend; see [`cspnet_core::Channel`].")]
        ///
        /// ```
        #[doc = concat!("let ch = ", stringify!($krate), "::Channel::<u32>::with_buffer(1);")]
        /// let (r, w) = (ch.reader(), ch.writer());
        /// w.write(1).unwrap();
        /// assert_eq!(r.read(), Ok(1));
        /// ```
        pub type Channel<T> = $crate::Channel<$engine, T>;

        #[doc = concat!("A reader end of this backend's channels; see [`cspnet_core::Reader`].")]
        ///
        /// ```
        #[doc = concat!("let ch = ", stringify!($krate), "::Channel::<u32>::with_buffer(1);")]
        #[doc = concat!("let r: ", stringify!($krate), "::Reader<u32> = ch.reader();")]
        /// ch.writer().write(2).unwrap();
        /// assert_eq!(r.read(), Ok(2));
        /// ```
        pub type Reader<T> = $crate::Reader<$engine, T>;

        #[doc = concat!("A writer end of this backend's channels; see [`cspnet_core::Writer`].")]
        ///
        /// ```
        #[doc = concat!("let ch = ", stringify!($krate), "::Channel::<u32>::with_buffer(1);")]
        #[doc = concat!("let w: ", stringify!($krate), "::Writer<u32> = ch.writer();")]
        /// let r = ch.reader();
        /// w.write(3).unwrap();
        /// assert_eq!(r.read(), Ok(3));
        /// ```
        pub type Writer<T> = $crate::Writer<$engine, T>;

        #[doc = concat!("Iterator over a reader's values; see [`cspnet_core::Iter`].")]
        ///
        /// ```
        #[doc = concat!("let ch = ", stringify!($krate), "::Channel::<u32>::with_buffer(1);")]
        /// let (r, w) = (ch.reader(), ch.writer());
        /// w.write(4).unwrap();
        /// w.retire();
        #[doc = concat!("let it: ", stringify!($krate), "::Iter<'_, u32> = r.iter();")]
        /// assert_eq!(it.collect::<Vec<_>>(), vec![Ok(4)]);
        /// ```
        pub type Iter<'a, T> = $crate::Iter<'a, $engine, T>;

        #[doc = concat!("Owning iterator over a reader's values; see [`cspnet_core::IntoIter`].")]
        ///
        /// ```
        #[doc = concat!("let ch = ", stringify!($krate), "::Channel::<u32>::with_buffer(1);")]
        /// let (r, w) = (ch.reader(), ch.writer());
        /// w.write(5).unwrap();
        /// w.retire();
        #[doc = concat!("let it: ", stringify!($krate), "::IntoIter<u32> = r.into_iter();")]
        /// assert_eq!(it.collect::<Vec<_>>(), vec![Ok(5)]);
        /// ```
        pub type IntoIter<T> = $crate::IntoIter<$engine, T>;

        #[doc = concat!("A choice between guards on this backend; see [`cspnet_core::Alternation`].")]
        ///
        /// ```
        #[doc = concat!("let got = ", stringify!($krate), "::Alternation::<u8>::new().skip(|| 1).select();")]
        /// assert_eq!(got, Ok(1));
        /// ```
        pub type Alternation<'a, R> = $crate::Alternation<'a, $engine, R>;

        #[doc = concat!("A barrier on this backend; see [`cspnet_core::Barrier`].")]
        ///
        /// ```
        #[doc = concat!("let b = ", stringify!($krate), "::Barrier::new();")]
        /// let me = b.enroll();
        /// assert_eq!(me.sync(), Ok(()));
        /// ```
        pub type Barrier = $crate::Barrier<$engine>;

        #[doc = concat!("An enrolled member of this backend's barriers; see [`cspnet_core::BarrierEnd`].")]
        ///
        /// ```
        #[doc = concat!("let b = ", stringify!($krate), "::Barrier::new();")]
        #[doc = concat!("let me: ", stringify!($krate), "::BarrierEnd = b.enroll();")]
        /// me.resign();
        /// ```
        pub type BarrierEnd = $crate::BarrierEnd<$engine>;

        #[doc = concat!("A CSP process on this backend; see [`cspnet_core::Process`].")]
        ///
        /// ```
        #[doc = concat!("let p: ", stringify!($krate), "::Process<u32> = ", stringify!($krate), "::process(|| Ok(7));")]
        #[doc = concat!("assert_eq!(", stringify!($krate), "::parallel([p]).unwrap(), vec![Ok(7)]);")]
        /// ```
        pub type Process<T> = $crate::Process<$engine, T>;

        #[doc = concat!("Processes started by [`spawn`]; see [`cspnet_core::Spawned`].")]
        ///
        /// ```
        #[doc = concat!("let h: ", stringify!($krate), "::Spawned<u32> = ", stringify!($krate), "::spawn([", stringify!($krate), "::process(|| Ok(8))]);")]
        /// assert_eq!(h.join().unwrap(), vec![Ok(8)]);
        /// ```
        pub type Spawned<T> = $crate::Spawned<$engine, T>;

        #[doc = concat!("Starts processes isolated from each other's crashes and reports each one's exit; see [`cspnet_core::Supervisor`].")]
        ///
        /// ```
        #[doc = concat!("let mut sup: ", stringify!($krate), "::Supervisor<u32> = ", stringify!($krate), "::Supervisor::new();")]
        #[doc = concat!("sup.start(", stringify!($krate), "::process(|| Ok(8))).unwrap();")]
        /// assert_eq!(sup.next_exit().unwrap().outcome, Ok(Ok(8)));
        /// ```
        pub type Supervisor<T> = $crate::Supervisor<$engine, T>;

        #[doc = concat!("A farm of worker processes on this backend: jobs by ID in, results by ID out; see [`cspnet_core::Farm`].")]
        ///
        /// ```
        #[doc = concat!("let farm: ", stringify!($krate), "::Farm<u32, u32> = ", stringify!($krate), "::Farm::new(|n, _| n * 2);")]
        /// assert_eq!(farm.run([("a", 4)]).unwrap().results["a"], 8);
        /// ```
        pub type Farm<J, R> = $crate::Farm<$engine, J, R>;

        #[doc = concat!("A running farm on this backend, an iterator over results as they finish; see [`cspnet_core::FarmRun`].")]
        ///
        /// ```
        #[doc = concat!("let run: ", stringify!($krate), "::FarmRun<u32, u32> = ", stringify!($krate), "::Farm::new(|n, _| n).start([(\"a\", 1)]).unwrap();")]
        /// assert_eq!(run.count(), 1);
        /// ```
        pub type FarmRun<J, R> = $crate::FarmRun<$engine, J, R>;

        #[doc = concat!("What a farm's worker process is given on this backend; see [`cspnet_core::WorkerEnds`].")]
        ///
        /// ```
        #[doc = concat!("let farm = ", stringify!($krate), "::Farm::<u8, u8>::with_workers(|ends: ", stringify!($krate), "::WorkerEnds<u8, u8>, _| ", stringify!($krate), "::process(move || ends.serve(|n, _| n)));")]
        /// assert_eq!(farm.run([("a", 3)]).unwrap().results["a"], 3);
        /// ```
        pub type WorkerEnds<J, R> = $crate::WorkerEnds<$engine, J, R>;

        /// Makes a CSP process from a closure; see [`cspnet_core::process`].
        ///
        /// ```
        #[doc = concat!("let p = ", stringify!($krate), "::process(|| Ok(1 + 1));")]
        #[doc = concat!("assert_eq!(", stringify!($krate), "::parallel([p]).unwrap(), vec![Ok(2)]);")]
        /// ```
        pub fn process<T, F>(body: F) -> Process<T>
        where
            $engine: $crate::Carries<T>,
            F: FnOnce() -> $crate::Outcome<T> + Send + 'static,
        {
            $crate::process(body)
        }

        /// Runs the processes concurrently and waits for all; see [`cspnet_core::parallel`].
        ///
        /// ```
        #[doc = concat!("use ", stringify!($krate), "::{parallel, process};")]
        /// let out = parallel((1..=3u32).map(|i| process(move || Ok(i * 10)))).unwrap();
        /// assert_eq!(out, vec![Ok(10), Ok(20), Ok(30)]);
        /// ```
        pub fn parallel<T, I>(procs: I) -> Result<Vec<$crate::Outcome<T>>, $crate::ProcessError>
        where
            $engine: $crate::Carries<T>,
            T: Send + 'static,
            I: IntoIterator<Item = Process<T>>,
        {
            $crate::parallel(procs)
        }

        /// Runs the processes one after another; see [`cspnet_core::sequence`].
        ///
        /// ```
        #[doc = concat!("use ", stringify!($krate), "::{process, sequence};")]
        /// let out = sequence([process(|| Ok(1u32)), process(|| Ok(2))]).unwrap();
        /// assert_eq!(out, vec![Ok(1), Ok(2)]);
        /// ```
        pub fn sequence<T, I>(procs: I) -> Result<Vec<$crate::Outcome<T>>, $crate::ProcessError>
        where
            $engine: $crate::Carries<T>,
            T: Send + 'static,
            I: IntoIterator<Item = Process<T>>,
        {
            $crate::sequence(procs)
        }

        /// Starts the processes and returns at once; see [`cspnet_core::spawn`].
        ///
        /// ```
        #[doc = concat!("use ", stringify!($krate), "::{Channel, process, spawn};")]
        /// let ch = Channel::<u32>::new();
        /// let w = ch.writer();
        /// let h = spawn([process(move || w.write(8))]);
        /// assert_eq!(ch.reader().read(), Ok(8));
        /// h.join().unwrap();
        /// ```
        pub fn spawn<T, I>(procs: I) -> Spawned<T>
        where
            $engine: $crate::Carries<T>,
            T: Send + 'static,
            I: IntoIterator<Item = Process<T>>,
        {
            $crate::spawn(procs)
        }

        /// Runs a blocking call without stalling other processes; see [`cspnet_core::io`].
        ///
        /// ```
        #[doc = concat!("let n = ", stringify!($krate), "::io(|| std::fs::read_dir(\".\").map(|d| d.count()).unwrap_or(0));")]
        /// assert!(n > 0);
        /// ```
        pub fn io<R>(f: impl FnOnce() -> R) -> R {
            $crate::io::<$engine, R>(f)
        }

        /// The id of the running CSP process; see [`cspnet_core::current_process_id`].
        ///
        /// ```
        #[doc = concat!("use ", stringify!($krate), "::{current_process_id, parallel, process};")]
        /// let out = parallel([process(|| Ok(current_process_id().as_u64()))]).unwrap();
        /// assert_ne!(out[0], Ok(current_process_id().as_u64()));
        /// ```
        pub fn current_process_id() -> $crate::ProcessId {
            $crate::current_process_id::<$engine>()
        }
    };
}
