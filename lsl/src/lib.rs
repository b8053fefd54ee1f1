//! Lab Streaming Layer (LSL) through liblsl's C API, loaded at run time.
//!
//! The library is the one the `pylsl` wheel ships (`lab-setup models`
//! installs it beside ONNX Runtime as [`LIBRARY`]); nothing here speaks LSL's
//! wire protocol. What the lab needs: list the streams on the network, open
//! an inlet, read its channels (labels and units from the stream's XML
//! description), pull numeric or string samples with their LSL time stamps,
//! measure the clock offset to the sender, and (for tests and the recorder's
//! own marker stream) publish an outlet.
//!
//! Times are LSL's: seconds of `CLOCK_MONOTONIC` on Linux
//! (`lsl_local_clock` is `std::chrono::steady_clock`), so on one machine an
//! LSL stamp and the recorder's monotonic clock are the same clock.
//!
//! Threads: each [`Inlet`] is pulled from one thread; its
//! [`Inlet::time_correction`] may be called from another (liblsl locks it).
//! An [`Outlet`] is pushed from one thread.

mod api;

use std::ffi::{CStr, CString, c_char};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use api::{Api, Handle};

/// The library's file name in the models folder.
pub use lab_model::models::LSL_LIBRARY as LIBRARY;

#[derive(Debug, thiserror::Error)]
pub enum LslError {
    #[error("cannot load liblsl from {path}: {message}")]
    Load { path: String, message: String },
    #[error("liblsl {what}: {message}")]
    Call { what: &'static str, message: String },
    #[error("the stream is lost (its sender went away)")]
    Lost,
    #[error("no answer from the stream within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Argument(String),
}

/// liblsl's error codes (`lsl_error_code_t`).
const TIMEOUT: i32 = -1;
const LOST: i32 = -2;

/// How a stream's values are typed (`lsl_channel_format_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Float32,
    Double64,
    String,
    Int32,
    Int16,
    Int8,
    Int64,
    Undefined,
}

impl Format {
    fn from_c(v: i32) -> Format {
        match v {
            1 => Format::Float32,
            2 => Format::Double64,
            3 => Format::String,
            4 => Format::Int32,
            5 => Format::Int16,
            6 => Format::Int8,
            7 => Format::Int64,
            _ => Format::Undefined,
        }
    }

    fn to_c(self) -> i32 {
        match self {
            Format::Float32 => 1,
            Format::Double64 => 2,
            Format::String => 3,
            Format::Int32 => 4,
            Format::Int16 => 5,
            Format::Int8 => 6,
            Format::Int64 => 7,
            Format::Undefined => 0,
        }
    }

    /// The name XDF and LSL's XML use: `float32`, `double64`, `string`, ...
    pub fn name(self) -> &'static str {
        match self {
            Format::Float32 => "float32",
            Format::Double64 => "double64",
            Format::String => "string",
            Format::Int32 => "int32",
            Format::Int16 => "int16",
            Format::Int8 => "int8",
            Format::Int64 => "int64",
            Format::Undefined => "undefined",
        }
    }
}

/// One channel as the stream describes it (`desc/channels/channel`); empty
/// strings where the sender said nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Channel {
    pub label: String,
    pub unit: String,
    pub kind: String,
}

/// What a stream says of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    pub name: String,
    /// LSL's `type`: `EEG`, `EDA`, `Markers`, ...
    pub kind: String,
    pub channel_count: usize,
    /// Samples per second; 0 for an irregular stream (markers).
    pub nominal_srate: f64,
    pub format: Format,
    pub source_id: String,
    pub uid: String,
    pub hostname: String,
    /// Only in the full description an inlet fetches; a resolved stream's
    /// list is empty.
    pub channels: Vec<Channel>,
}

/// The loaded library.
pub struct Lsl {
    api: Api,
}

impl Lsl {
    /// Loads liblsl from `path`. `config` (the text of an `lsl_api.cfg`)
    /// is applied first when given: LSL reads its configuration once, before
    /// anything else, so a process passes the same text every time.
    pub fn open(path: &Path, config: Option<&str>) -> Result<Arc<Lsl>, LslError> {
        let api = Api::load(path).map_err(|e| LslError::Load {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if let Some(text) = config {
            let text = cstring(text)?;
            // SAFETY: a valid C string; liblsl copies it.
            unsafe { (api.set_config_content)(text.as_ptr()) };
        }
        Ok(Arc::new(Lsl { api }))
    }

    /// LSL's clock, seconds (`CLOCK_MONOTONIC` on Linux).
    pub fn local_clock(&self) -> f64 {
        // SAFETY: no arguments, no state.
        unsafe { (self.api.local_clock)() }
    }

    /// liblsl's version, e.g. 118 for 1.18.
    pub fn library_version(&self) -> i32 {
        // SAFETY: no arguments, no state.
        unsafe { (self.api.library_version)() }
    }

    /// Every stream seen within `wait`.
    pub fn resolve_all(self: &Arc<Self>, wait: Duration) -> Result<Vec<Resolved>, LslError> {
        let mut buf = [std::ptr::null_mut(); 256];
        // SAFETY: the buffer holds 256 handles.
        let n = unsafe { (self.api.resolve_all)(buf.as_mut_ptr(), 256, wait.as_secs_f64()) };
        self.collect(n, &buf, "resolve_all")
    }

    /// Streams whose `prop` (`name`, `type`, `source_id`, ...) is `value`,
    /// waiting up to `timeout` for at least one.
    pub fn resolve_by(
        self: &Arc<Self>,
        prop: &str,
        value: &str,
        timeout: Duration,
    ) -> Result<Vec<Resolved>, LslError> {
        let (p, v) = (cstring(prop)?, cstring(value)?);
        let mut buf = [std::ptr::null_mut(); 256];
        // SAFETY: valid C strings; the buffer holds 256 handles.
        let n = unsafe {
            (self.api.resolve_byprop)(
                buf.as_mut_ptr(),
                256,
                p.as_ptr(),
                v.as_ptr(),
                1,
                timeout.as_secs_f64(),
            )
        };
        self.collect(n, &buf, "resolve_byprop")
    }

    fn collect(
        self: &Arc<Self>,
        n: i32,
        buf: &[Handle],
        what: &'static str,
    ) -> Result<Vec<Resolved>, LslError> {
        if n < 0 {
            return Err(self.error(what, n));
        }
        Ok(buf[..n as usize]
            .iter()
            .map(|&h| {
                let handle = InfoHandle {
                    lsl: self.clone(),
                    h,
                };
                Resolved {
                    info: handle.read(),
                    handle,
                }
            })
            .collect())
    }

    fn error(&self, what: &'static str, code: i32) -> LslError {
        match code {
            LOST => LslError::Lost,
            _ => LslError::Call {
                what,
                // SAFETY: liblsl returns a static, NUL-terminated message.
                message: unsafe { text((self.api.last_error)()) },
            },
        }
    }

    /// Publishes a stream. `channels` are written into its description.
    pub fn outlet(
        self: &Arc<Self>,
        name: &str,
        kind: &str,
        channels: &[Channel],
        nominal_srate: f64,
        format: Format,
        source_id: &str,
    ) -> Result<Outlet, LslError> {
        let (n, k, s) = (cstring(name)?, cstring(kind)?, cstring(source_id)?);
        let f = &self.api;
        // SAFETY: valid C strings; the info is destroyed below, after the
        // outlet copied it.
        unsafe {
            let info = (f.create_streaminfo)(
                n.as_ptr(),
                k.as_ptr(),
                channels.len() as i32,
                nominal_srate,
                format.to_c(),
                s.as_ptr(),
            );
            if info.is_null() {
                return Err(self.error("create_streaminfo", -3));
            }
            let list = (f.append_child)((f.get_desc)(info), c"channels".as_ptr());
            for c in channels {
                let ch = (f.append_child)(list, c"channel".as_ptr());
                for (key, value) in [(c"label", &c.label), (c"unit", &c.unit), (c"type", &c.kind)] {
                    let v = cstring(value)?;
                    (f.append_child_value)(ch, key.as_ptr(), v.as_ptr());
                }
            }
            let out = (f.create_outlet)(info, 0, 360);
            (f.destroy_streaminfo)(info);
            if out.is_null() {
                return Err(self.error("create_outlet", -4));
            }
            Ok(Outlet {
                lsl: self.clone(),
                h: out,
                channels: channels.len(),
            })
        }
    }
}

/// A stream found on the network; open it with [`Resolved::open`].
pub struct Resolved {
    pub info: StreamInfo,
    handle: InfoHandle,
}

impl Resolved {
    /// An inlet buffering up to `buffer_s` seconds of samples; it
    /// reconnects by itself when the sender comes back under the same
    /// `source_id`.
    pub fn open(&self, buffer_s: u32) -> Result<Inlet, LslError> {
        let lsl = &self.handle.lsl;
        // SAFETY: a live info handle; liblsl copies it.
        let h = unsafe { (lsl.api.create_inlet)(self.handle.h, buffer_s as i32, 0, 1) };
        if h.is_null() {
            return Err(lsl.error("create_inlet", -4));
        }
        Ok(Inlet {
            lsl: lsl.clone(),
            h,
            channels: self.info.channel_count,
            format: self.info.format,
        })
    }
}

struct InfoHandle {
    lsl: Arc<Lsl>,
    h: Handle,
}

impl InfoHandle {
    fn read(&self) -> StreamInfo {
        let f = &self.lsl.api;
        // SAFETY: a live info handle; the strings it returns live as long
        // as it does and are copied here.
        unsafe {
            let h = self.h;
            let mut channels = Vec::new();
            let mut ch = (f.child)(
                (f.child)((f.get_desc)(h), c"channels".as_ptr()),
                c"channel".as_ptr(),
            );
            while (f.empty)(ch) == 0 {
                channels.push(Channel {
                    label: text((f.child_value_n)(ch, c"label".as_ptr())),
                    unit: text((f.child_value_n)(ch, c"unit".as_ptr())),
                    kind: text((f.child_value_n)(ch, c"type".as_ptr())),
                });
                ch = (f.next_sibling_n)(ch, c"channel".as_ptr());
            }
            StreamInfo {
                name: text((f.get_name)(h)),
                kind: text((f.get_type)(h)),
                channel_count: (f.get_channel_count)(h).max(0) as usize,
                nominal_srate: (f.get_nominal_srate)(h),
                format: Format::from_c((f.get_channel_format)(h)),
                source_id: text((f.get_source_id)(h)),
                uid: text((f.get_uid)(h)),
                hostname: text((f.get_hostname)(h)),
                channels,
            }
        }
    }
}

impl Drop for InfoHandle {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and dropped once.
        unsafe { (self.lsl.api.destroy_streaminfo)(self.h) }
    }
}

/// The clock offset to a stream's sender (`lsl_time_correction_ex`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Correction {
    /// Seconds to add to the sender's stamps to get this machine's clock.
    pub offset: f64,
    /// The sender's clock when it was measured.
    pub remote_time: f64,
    /// The round trip of the best probe, seconds: the offset's uncertainty.
    pub uncertainty: f64,
}

/// Samples pulled from an inlet: one time stamp (the sender's clock) per
/// sample, the values sample after sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk<T> {
    pub stamps: Vec<f64>,
    pub values: Vec<T>,
}

/// A connection to one stream.
pub struct Inlet {
    lsl: Arc<Lsl>,
    h: Handle,
    channels: usize,
    format: Format,
}

// SAFETY: liblsl's inlet may be used from any thread, one call at a time
// (`&mut self` for pulls); time correction locks inside liblsl.
unsafe impl Send for Inlet {}
unsafe impl Sync for Inlet {}

impl Inlet {
    fn check(&self, what: &'static str, ec: i32, timeout: Duration) -> Result<(), LslError> {
        match ec {
            0 => Ok(()),
            TIMEOUT => Err(LslError::Timeout(timeout)),
            code => Err(self.lsl.error(what, code)),
        }
    }

    /// The stream's full description, channels included.
    pub fn full_info(&self, timeout: Duration) -> Result<StreamInfo, LslError> {
        let mut ec = 0;
        // SAFETY: a live inlet; the returned info is ours to destroy.
        let h = unsafe { (self.lsl.api.get_fullinfo)(self.h, timeout.as_secs_f64(), &mut ec) };
        self.check("get_fullinfo", ec, timeout)?;
        if h.is_null() {
            return Err(self.lsl.error("get_fullinfo", -4));
        }
        Ok(InfoHandle {
            lsl: self.lsl.clone(),
            h,
        }
        .read())
    }

    /// Starts the transfer (else the first pull does).
    pub fn open_stream(&self, timeout: Duration) -> Result<(), LslError> {
        let mut ec = 0;
        // SAFETY: a live inlet.
        unsafe { (self.lsl.api.open_stream)(self.h, timeout.as_secs_f64(), &mut ec) };
        self.check("open_stream", ec, timeout)
    }

    /// The offset to the sender's clock; the first call waits for a few
    /// probes, later ones return the running estimate.
    pub fn time_correction(&self, timeout: Duration) -> Result<Correction, LslError> {
        let (mut remote_time, mut uncertainty, mut ec) = (0.0, 0.0, 0);
        // SAFETY: a live inlet; liblsl locks the estimate.
        let offset = unsafe {
            (self.lsl.api.time_correction_ex)(
                self.h,
                &mut remote_time,
                &mut uncertainty,
                timeout.as_secs_f64(),
                &mut ec,
            )
        };
        self.check("time_correction", ec, timeout)?;
        Ok(Correction {
            offset,
            remote_time,
            uncertainty,
        })
    }

    /// Up to `max_samples` numeric samples, waiting up to `timeout` for the
    /// first (an empty chunk when none came). Integers arrive as f64.
    pub fn pull_numeric(
        &mut self,
        max_samples: usize,
        timeout: Duration,
    ) -> Result<Chunk<f64>, LslError> {
        if self.format == Format::String {
            return Err(LslError::Argument(
                "a string stream: use pull_strings".into(),
            ));
        }
        let n = self.channels.max(1);
        let mut values = vec![0.0f64; max_samples * n];
        let mut stamps = vec![0.0f64; max_samples];
        let mut ec = 0;
        // SAFETY: buffers of max_samples × channels values and max_samples
        // stamps, as liblsl requires.
        let got = unsafe {
            (self.lsl.api.pull_chunk_d)(
                self.h,
                values.as_mut_ptr(),
                stamps.as_mut_ptr(),
                values.len() as _,
                stamps.len() as _,
                timeout.as_secs_f64(),
                &mut ec,
            )
        } as usize;
        self.check("pull_chunk_d", ec, timeout)?;
        values.truncate(got);
        stamps.truncate(got / n);
        Ok(Chunk { stamps, values })
    }

    /// Up to `max_samples` string samples (marker streams), as
    /// [`Inlet::pull_numeric`].
    pub fn pull_strings(
        &mut self,
        max_samples: usize,
        timeout: Duration,
    ) -> Result<Chunk<String>, LslError> {
        let n = self.channels.max(1);
        let mut ptrs: Vec<*mut c_char> = vec![std::ptr::null_mut(); max_samples * n];
        let mut stamps = vec![0.0f64; max_samples];
        let mut ec = 0;
        // SAFETY: buffers sized as liblsl requires. It allocates a string
        // for every slot, filled or not; each is freed below.
        let got = unsafe {
            (self.lsl.api.pull_chunk_str)(
                self.h,
                ptrs.as_mut_ptr(),
                stamps.as_mut_ptr(),
                ptrs.len() as _,
                stamps.len() as _,
                timeout.as_secs_f64(),
                &mut ec,
            )
        } as usize;
        let mut values = Vec::with_capacity(got);
        for (i, &p) in ptrs.iter().enumerate() {
            if p.is_null() {
                continue;
            }
            if i < got {
                // SAFETY: a NUL-terminated string liblsl allocated.
                values.push(unsafe { text(p) });
            }
            // SAFETY: liblsl's own allocation, freed once.
            unsafe { (self.lsl.api.destroy_string)(p) };
        }
        self.check("pull_chunk_str", ec, timeout)?;
        stamps.truncate(got / n);
        Ok(Chunk { stamps, values })
    }
}

impl Drop for Inlet {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and dropped once.
        unsafe { (self.lsl.api.destroy_inlet)(self.h) }
    }
}

/// A stream this process publishes.
pub struct Outlet {
    lsl: Arc<Lsl>,
    h: Handle,
    channels: usize,
}

// SAFETY: an outlet is pushed from one thread at a time (`&mut self`).
unsafe impl Send for Outlet {}

impl Outlet {
    fn one_per_channel(&self, values: usize) -> Result<(), LslError> {
        if values == self.channels {
            return Ok(());
        }
        Err(LslError::Argument(format!(
            "{values} values for {} channels",
            self.channels
        )))
    }

    /// Sends one numeric sample stamped `t` (LSL's clock; 0 is "now").
    pub fn push(&mut self, values: &[f64], t: f64) -> Result<(), LslError> {
        self.one_per_channel(values.len())?;
        // SAFETY: exactly `channels` values.
        let ec = unsafe { (self.lsl.api.push_sample_dt)(self.h, values.as_ptr(), t) };
        if ec != 0 {
            return Err(self.lsl.error("push_sample_dt", ec));
        }
        Ok(())
    }

    /// Sends one string sample stamped `t`.
    pub fn push_strings(&mut self, values: &[&str], t: f64) -> Result<(), LslError> {
        self.one_per_channel(values.len())?;
        let owned = values
            .iter()
            .map(|v| cstring(v))
            .collect::<Result<Vec<_>, _>>()?;
        let ptrs: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        // SAFETY: `channels` valid C strings, alive for the call.
        let ec = unsafe { (self.lsl.api.push_sample_strt)(self.h, ptrs.as_ptr(), t) };
        if ec != 0 {
            return Err(self.lsl.error("push_sample_strt", ec));
        }
        Ok(())
    }

    /// Whether an inlet is connected, waiting up to `timeout`.
    pub fn wait_for_consumers(&self, timeout: Duration) -> bool {
        // SAFETY: a live outlet.
        unsafe { (self.lsl.api.wait_for_consumers)(self.h, timeout.as_secs_f64()) != 0 }
    }
}

impl Drop for Outlet {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and dropped once.
        unsafe { (self.lsl.api.destroy_outlet)(self.h) }
    }
}

fn cstring(s: &str) -> Result<CString, LslError> {
    CString::new(s).map_err(|_| LslError::Argument(format!("{s:?} holds a NUL byte")))
}

/// Copies a C string liblsl returned ("" for null); invalid UTF-8 is
/// replaced.
///
/// # Safety
/// `p` is null or a NUL-terminated string alive for the call.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: as the caller promised.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests;
