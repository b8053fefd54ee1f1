//! The recording first: its streaming threads run at a raised priority.
//!
//! A station's two cores are shared with the participant's browser, and in
//! tests with observers' browsers too. Under that load a capture thread that
//! wakes late takes its frame late: when `ximagesrc` has waited for a slot
//! on the frame grid it stamps the frame with that slot, not with when it
//! copied the screen, so a late wake shows newer content under an older
//! time; an encoder that falls behind makes the capture skip slots; and the
//! microphone's buffers come in bursts. GStreamer's documented way to give its threads a
//! priority is the `STREAM_STATUS` message of type `Enter`, posted from the
//! new streaming thread itself: a bus sync handler runs in that thread and
//! sets its nice value (on Linux a nice value belongs to a thread,
//! setpriority(2)). Threads the live view owns (elements named `live_…`)
//! stay at the process's priority, so the observers never compete with the
//! recording, and a thread leaving its task goes back to it (the task pool
//! reuses threads). Helper threads an element starts itself inherit the
//! raised value (x264's); those taken from GLib's shared pool
//! (videoconvert's with `n-threads` > 1, above 1080p30) do not.
//!
//! Lowering a nice value needs `CAP_SYS_NICE` or an `RLIMIT_NICE` allowing
//! it (`docs/station-config.md`: `/etc/security/limits.d` or systemd's
//! `LimitNICE=`). Without it the recording goes on at the normal priority,
//! and the recorder says so once.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::Stream;
use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::mpsc;

/// The nice value of the recording's streaming threads: PulseAudio asks
/// for −11 for its own; one step less, so the sound server still comes first.
pub const RECORDING_NICE: i32 = -10;

/// Elements whose names start with this belong to the live view.
pub const LIVE_PREFIX: &str = "live_";

static WARNED: AtomicBool = AtomicBool::new(false);

/// Raises the calling thread when `msg` says that a recording element's
/// streaming thread is starting (it is posted from that very thread).
pub fn on_message(msg: &gst::Message) {
    let gst::MessageView::StreamStatus(s) = msg.view() else {
        return;
    };
    let (kind, owner) = s.get();
    match kind {
        gst::StreamStatusType::Enter if !owner.name().starts_with(LIVE_PREFIX) => {}
        gst::StreamStatusType::Enter | gst::StreamStatusType::Leave => {
            // GStreamer's task pool reuses threads: one leaving a recording
            // element goes back to the process's priority, and a live
            // element never keeps one it was handed.
            let _ = lower_current_thread_to_process();
            return;
        }
        _ => return,
    }
    if let Err(e) = raise_current_thread(RECORDING_NICE)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            "cannot raise the recording threads' priority to nice {RECORDING_NICE} ({e}); \
             they run at the normal priority (docs/station-config.md, \"Priority\")"
        );
    }
}

/// Sets the calling thread's nice value to `nice` unless it is already
/// that or lower (never lowers a priority someone raised further).
pub fn raise_current_thread(nice: i32) -> io::Result<()> {
    let tid = current_tid();
    let now = thread_nice(tid)?;
    if now <= nice {
        return Ok(());
    }
    // SAFETY: setpriority reads its three integer arguments only.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Puts the calling thread back to the process's own nice value (its main
/// thread's) if it runs above it; always allowed.
fn lower_current_thread_to_process() -> io::Result<()> {
    // SAFETY: getpid has no arguments and cannot fail.
    let main = thread_nice(unsafe { libc::getpid() } as libc::id_t)?;
    let tid = current_tid();
    if thread_nice(tid)? < main {
        // SAFETY: as in raise_current_thread.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, main) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The nice value of thread `tid` (`0` for the calling thread).
pub fn thread_nice(tid: libc::id_t) -> io::Result<i32> {
    // getpriority may return -1 as a value: errno tells the two apart.
    // SAFETY: errno is thread-local; getpriority reads its arguments only.
    unsafe {
        *libc::__errno_location() = 0;
        let v = libc::getpriority(libc::PRIO_PROCESS, tid);
        if v == -1 && *libc::__errno_location() != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(v)
    }
}

fn current_tid() -> libc::id_t {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() as libc::id_t }
}

/// Whether a recording started by this process could raise its threads
/// (tried once, on a scratch thread), for the console's pre-flight check.
pub fn recording_can_raise() -> bool {
    static CAN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CAN.get_or_init(|| {
        std::thread::spawn(|| raise_current_thread(RECORDING_NICE).is_ok())
            .join()
            .unwrap_or(false)
    })
}

/// What the console says when [`recording_can_raise`] is false.
pub const CANNOT_RAISE_RU: &str = "Запись не сможет повысить приоритет своих потоков: на загруженном компьютере возможны пропуски кадров и сдвиг звука. Администратору: разрешить учётной записи станции nice −10 (docs/station-config.md, «Priority»).";
pub const CANNOT_RAISE_EN: &str = "The recording cannot raise its threads' priority: on a busy computer frames may be dropped and the sound may drift. For the administrator: allow the station's account nice -10 (docs/station-config.md, \"Priority\").";

/// Installs the priority rule as `bus`'s sync handler, every message then
/// queued on the bus as usual. Call before the pipeline leaves `Null`.
pub fn install(bus: &gst::Bus) {
    bus.set_sync_handler(|_, msg| {
        on_message(msg);
        gst::BusSyncReply::Pass
    });
}

/// The bus's messages as a stream (like `gst::Bus::stream`), the priority
/// rule still applied in the posting thread. Messages already queued come
/// first, in order. Dropping it puts [`install`]'s handler back.
pub fn stream(bus: &gst::Bus) -> BusMessages {
    let (tx, rx) = mpsc::unbounded_channel();
    // Held while the queued messages are moved, so that none posted
    // meanwhile overtakes them.
    let order = Arc::new(Mutex::new(()));
    let guard = order.lock().unwrap_or_else(|e| e.into_inner());
    bus.set_sync_handler({
        let tx = tx.clone();
        let order = order.clone();
        move |_, msg| {
            on_message(msg);
            let _g = order.lock().unwrap_or_else(|e| e.into_inner());
            let _ = tx.send(msg.clone());
            gst::BusSyncReply::Drop
        }
    });
    while let Some(msg) = bus.pop() {
        let _ = tx.send(msg);
    }
    drop(guard);
    BusMessages {
        bus: bus.downgrade(),
        rx,
    }
}

/// See [`stream`].
pub struct BusMessages {
    bus: gst::glib::WeakRef<gst::Bus>,
    rx: mpsc::UnboundedReceiver<gst::Message>,
}

impl Stream for BusMessages {
    type Item = gst::Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<gst::Message>> {
        match self.rx.poll_recv(cx) {
            // A message posted while the handlers were swapped may have been
            // queued on the bus after the queue was moved: take it now.
            Poll::Pending => match self.bus.upgrade().and_then(|b| b.pop()) {
                Some(msg) => Poll::Ready(Some(msg)),
                None => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl Drop for BusMessages {
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            install(&bus);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// Threads of a pipeline's recording elements get the raised nice
    /// value where this process may set it, and a `live_` element's thread
    /// keeps its own; messages reach the stream in order.
    #[tokio::test]
    async fn recording_threads_are_raised_and_live_ones_are_not() {
        gst::init().unwrap();
        let pipeline = gst::parse::launch(
            "audiotestsrc name=rec_src num-buffers=50 ! queue name=rec_queue ! fakesink \
             audiotestsrc name=live_src num-buffers=50 ! fakesink",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let seen: Arc<Mutex<Vec<(String, i32)>>> = Arc::default();
        for name in ["rec_src", "rec_queue", "live_src"] {
            let el = pipeline.by_name(name).unwrap();
            let pad = el.static_pad("src").unwrap();
            let seen = seen.clone();
            let once = AtomicBool::new(false);
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                if !once.swap(true, Ordering::Relaxed) {
                    let n = thread_nice(0).unwrap();
                    seen.lock().unwrap().push((name.to_string(), n));
                }
                gst::PadProbeReturn::Ok
            });
        }
        let bus = pipeline.bus().unwrap();
        install(&bus);
        let base = thread_nice(0).unwrap();
        let allowed = recording_can_raise();
        pipeline.set_state(gst::State::Playing).unwrap();
        let mut messages = stream(&bus);
        let mut eos = false;
        while let Some(m) =
            tokio::time::timeout(std::time::Duration::from_secs(10), messages.next())
                .await
                .unwrap()
        {
            if matches!(m.view(), gst::MessageView::Eos(_)) {
                eos = true;
                break;
            }
        }
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(eos, "the stream carried the pipeline's messages to its EOS");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3, "{seen:?}");
        for (name, nice) in &seen {
            let want = if name.starts_with(LIVE_PREFIX) || !allowed {
                base
            } else {
                RECORDING_NICE.min(base)
            };
            assert_eq!(*nice, want, "{name}: {seen:?} (allowed: {allowed})");
        }
    }
}
