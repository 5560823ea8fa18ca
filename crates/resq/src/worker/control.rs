//! How the outside (signals, tests, an embedding program) steers a worker.
//!
//! One `watch` channel carries the wanted mode. `Stop` and `Quit` are final: a
//! later pause or resume cannot undo a shutdown, and `Stop` overrides `Quit`
//! (a second, harder signal wins, as Resque users expect).

use tokio::sync::watch;

/// The mode the worker should be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fetch and run jobs.
    Run,
    /// Finish running jobs, fetch no new ones, wait for `Run` (USR2 / CONT).
    Pause,
    /// Finish running jobs, then exit (QUIT).
    Quit,
    /// Cancel running jobs, put them back at the head of their queues, exit
    /// (TERM / INT).
    Stop,
}

/// The sending half, cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    tx: watch::Sender<Mode>,
}

/// The worker's half.
pub type ControlReceiver = watch::Receiver<Mode>;

impl Control {
    /// A new control, starting in `Run`.
    pub fn new() -> (Control, ControlReceiver) {
        let (tx, rx) = watch::channel(Mode::Run);
        (Control { tx }, rx)
    }

    pub fn pause(&self) {
        self.set(Mode::Pause);
    }
    pub fn resume(&self) {
        self.set(Mode::Run);
    }
    pub fn quit(&self) {
        self.set(Mode::Quit);
    }
    pub fn stop(&self) {
        self.set(Mode::Stop);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.tx.borrow()
    }

    fn set(&self, wanted: Mode) {
        self.tx.send_if_modified(|current| {
            let allowed = match (*current, wanted) {
                (Mode::Stop, _) => false,
                (Mode::Quit, Mode::Stop) => true,
                (Mode::Quit, _) => false,
                _ => true,
            };
            if allowed && *current != wanted {
                *current = wanted;
                true
            } else {
                false
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_is_final_and_stop_wins() {
        let (c, _rx) = Control::new();
        c.pause();
        assert_eq!(c.mode(), Mode::Pause);
        c.resume();
        assert_eq!(c.mode(), Mode::Run);
        c.quit();
        c.resume();
        assert_eq!(c.mode(), Mode::Quit);
        c.stop();
        c.quit();
        c.pause();
        assert_eq!(c.mode(), Mode::Stop);
    }
}
