//! The liblsl functions the crate calls, looked up once when the library is
//! loaded (signatures from liblsl's `include/lsl/*.h`, 1.16-1.18).

use std::ffi::{c_char, c_ulong, c_void};
use std::path::Path;

use libloading::Library;

/// Any liblsl handle: `lsl_streaminfo`, `lsl_inlet`, `lsl_outlet`,
/// `lsl_xml_ptr` are opaque pointers.
pub type Handle = *mut c_void;

macro_rules! api {
    ($($field:ident = $symbol:literal : fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        pub struct Api {
            // Keeps the library mapped while the function pointers live.
            _lib: Library,
            $(pub $field: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
        }

        impl Api {
            pub fn load(path: &Path) -> Result<Api, libloading::Error> {
                // SAFETY: loading liblsl runs its static initialisers, which
                // have no preconditions.
                let lib = unsafe { Library::new(path) }?;
                $(
                    // SAFETY: the symbol has this signature in liblsl's C API.
                    let $field = unsafe {
                        *lib.get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>($symbol)?
                    };
                )*
                Ok(Api { _lib: lib, $($field,)* })
            }
        }
    };
}

api! {
    set_config_content = b"lsl_set_config_content": fn(*const c_char);
    local_clock = b"lsl_local_clock": fn() -> f64;
    library_version = b"lsl_library_version": fn() -> i32;
    last_error = b"lsl_last_error": fn() -> *const c_char;
    destroy_string = b"lsl_destroy_string": fn(*mut c_char);
    resolve_all = b"lsl_resolve_all": fn(*mut Handle, u32, f64) -> i32;
    resolve_byprop = b"lsl_resolve_byprop": fn(*mut Handle, u32, *const c_char, *const c_char, i32, f64) -> i32;
    create_streaminfo = b"lsl_create_streaminfo": fn(*const c_char, *const c_char, i32, f64, i32, *const c_char) -> Handle;
    destroy_streaminfo = b"lsl_destroy_streaminfo": fn(Handle);
    get_name = b"lsl_get_name": fn(Handle) -> *const c_char;
    get_type = b"lsl_get_type": fn(Handle) -> *const c_char;
    get_channel_count = b"lsl_get_channel_count": fn(Handle) -> i32;
    get_nominal_srate = b"lsl_get_nominal_srate": fn(Handle) -> f64;
    get_channel_format = b"lsl_get_channel_format": fn(Handle) -> i32;
    get_source_id = b"lsl_get_source_id": fn(Handle) -> *const c_char;
    get_uid = b"lsl_get_uid": fn(Handle) -> *const c_char;
    get_hostname = b"lsl_get_hostname": fn(Handle) -> *const c_char;
    get_desc = b"lsl_get_desc": fn(Handle) -> Handle;
    child = b"lsl_child": fn(Handle, *const c_char) -> Handle;
    next_sibling_n = b"lsl_next_sibling_n": fn(Handle, *const c_char) -> Handle;
    child_value_n = b"lsl_child_value_n": fn(Handle, *const c_char) -> *const c_char;
    empty = b"lsl_empty": fn(Handle) -> i32;
    append_child = b"lsl_append_child": fn(Handle, *const c_char) -> Handle;
    append_child_value = b"lsl_append_child_value": fn(Handle, *const c_char, *const c_char) -> Handle;
    create_inlet = b"lsl_create_inlet": fn(Handle, i32, i32, i32) -> Handle;
    destroy_inlet = b"lsl_destroy_inlet": fn(Handle);
    get_fullinfo = b"lsl_get_fullinfo": fn(Handle, f64, *mut i32) -> Handle;
    open_stream = b"lsl_open_stream": fn(Handle, f64, *mut i32);
    time_correction_ex = b"lsl_time_correction_ex": fn(Handle, *mut f64, *mut f64, f64, *mut i32) -> f64;
    pull_chunk_d = b"lsl_pull_chunk_d": fn(Handle, *mut f64, *mut f64, c_ulong, c_ulong, f64, *mut i32) -> c_ulong;
    pull_chunk_str = b"lsl_pull_chunk_str": fn(Handle, *mut *mut c_char, *mut f64, c_ulong, c_ulong, f64, *mut i32) -> c_ulong;
    create_outlet = b"lsl_create_outlet": fn(Handle, i32, i32) -> Handle;
    destroy_outlet = b"lsl_destroy_outlet": fn(Handle);
    push_sample_dt = b"lsl_push_sample_dt": fn(Handle, *const f64, f64) -> i32;
    push_sample_strt = b"lsl_push_sample_strt": fn(Handle, *const *const c_char, f64) -> i32;
    wait_for_consumers = b"lsl_wait_for_consumers": fn(Handle, f64) -> i32;
}
