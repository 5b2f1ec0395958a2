//! The one deadline rule of every async test, unit and integration alike: this file is the crate's
//! `test_deadline` module under `cfg(test)` and is included by `tests/support` with `#[path]`.

use std::time::Duration;

/// How long any async test may run: far above the slowest one's time on a loaded machine, so that a
/// hang fails the run with the test's name instead of stalling CI.
pub const TEST_DEADLINE: Duration = Duration::from_secs(180);

/// Aborts the test binary, naming the test, if the test is still running after [`TEST_DEADLINE`];
/// dropping the guard (the test ended) disarms it. First line of every async test.
///
/// NB: it aborts the whole process: in the shared integration binary (`tests/it`) a hang ends every
/// test still running there, and the message names the one that hung.
#[must_use = "the deadline lasts as long as the guard"]
pub fn deadline(test: &'static str) -> Deadline {
    let (disarm, disarmed) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            disarmed.recv_timeout(TEST_DEADLINE)
        {
            eprintln!("test {test} still running after {TEST_DEADLINE:?}: aborting");
            std::process::abort();
        }
    });
    Deadline(disarm)
}

/// The guard of [`deadline`]: the sender's drop disarms it.
pub struct Deadline(#[allow(dead_code)] std::sync::mpsc::Sender<()>);
