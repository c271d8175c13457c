//! Progress of long work on stderr: an animated bar on a terminal, and plain lines (position,
//! rate, elapsed time and ETA) every 30 s when stderr is a file or a pipe, so a run whose output is
//! redirected (`nohup`, Slurm, CI) still shows where it is. `--quiet` hides both.
//!
//! The interval of the plain lines is `EPSIM_PROGRESS_SECS` seconds when set (0: every update).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Default interval between two plain progress lines.
const EVERY: Duration = Duration::from_secs(30);

/// Hide every progress display (the CLI's `--quiet`).
pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

/// A progress display for `len` steps labelled `msg`: a bar on a terminal, plain lines every 30 s
/// otherwise, nothing when quiet.
pub(crate) fn progress(len: u64, msg: &str) -> ProgressBar {
    if QUIET.load(Ordering::Relaxed) {
        return ProgressBar::hidden();
    }
    let (pb, template) = if std::io::stderr().is_terminal() {
        (
            ProgressBar::new(len),
            "{msg} [{bar:40}] {pos}/{len} ({elapsed}, eta {eta})",
        )
    } else {
        let every = std::env::var("EPSIM_PROGRESS_SECS")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(EVERY, Duration::from_secs);
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(PlainLines::new(every)), 1);
        (
            ProgressBar::with_draw_target(Some(len), target),
            "{msg}: {pos}/{len} ({percent}%), {per_sec}, elapsed {elapsed}, eta {eta}",
        )
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg.to_string());
    pb
}

/// A "terminal" that turns indicatif's redraws into one plain stderr line per interval: the text
/// of a redraw is gathered until its flush, cursor moves and padding are dropped, and a line is
/// printed when `every` has passed since the last one (or since the start: work shorter than the
/// interval prints nothing).
#[derive(Debug)]
struct PlainLines {
    every: Duration,
    state: Mutex<LineState>,
}

#[derive(Debug)]
struct LineState {
    text: String,
    /// When the last line was printed (the start before the first).
    last: Instant,
}

impl PlainLines {
    fn new(every: Duration) -> Self {
        Self::starting(every, Instant::now())
    }

    fn starting(every: Duration, start: Instant) -> Self {
        Self {
            every,
            state: Mutex::new(LineState {
                text: String::new(),
                last: start,
            }),
        }
    }

    /// The line to print for the gathered text at `now`, if one is due (and forget the text).
    fn take_due(&self, now: Instant) -> Option<String> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let line = std::mem::take(&mut st.text).trim().to_string();
        if line.is_empty() || now.saturating_duration_since(st.last) < self.every {
            return None;
        }
        st.last = now;
        Some(line)
    }
}

impl TermLike for PlainLines {
    fn width(&self) -> u16 {
        // Wide enough that no line wraps; padding is trimmed anyway.
        500
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.text.push_str(s);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        if let Some(line) = self.take_due(Instant::now()) {
            eprintln!("{line}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_print_one_line_per_interval() {
        let t0 = Instant::now();
        let p = PlainLines::starting(Duration::from_secs(30), t0);
        // Nothing before the first interval has passed (short work stays silent).
        p.write_str("epoch 1/2: 1/10 (10%)").unwrap();
        assert_eq!(p.take_due(t0 + Duration::from_secs(10)), None);
        let t0 = t0 + Duration::from_secs(30);
        p.write_str("\r").unwrap();
        p.write_str("epoch 1/2: 3/10 (30%)").unwrap();
        p.write_str("     ").unwrap();
        assert_eq!(p.take_due(t0).as_deref(), Some("epoch 1/2: 3/10 (30%)"));
        p.write_str("epoch 1/2: 4/10 (40%)").unwrap();
        assert_eq!(p.take_due(t0 + Duration::from_secs(29)), None);
        // The text of a skipped redraw is not carried into the next line.
        p.write_str("epoch 1/2: 9/10 (90%)").unwrap();
        assert_eq!(
            p.take_due(t0 + Duration::from_secs(31)).as_deref(),
            Some("epoch 1/2: 9/10 (90%)")
        );
        // A redraw that only clears (finish_and_clear) prints nothing.
        p.write_str("   ").unwrap();
        assert_eq!(p.take_due(t0 + Duration::from_secs(100)), None);
    }
}
