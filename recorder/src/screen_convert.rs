//! `labscreenconvert`: the screen's BGRx → I420 (BT.709, limited range),
//! with dcv-color-primitives' SIMD converter.
//!
//! GStreamer 1.22's videoconvert has no fast path from any RGB format to a
//! YUV one: it unpacks each line to 16-bit ARGB, multiplies by the matrix,
//! resamples the chroma and packs again, 6.8 ms a 1080p frame here (20 % of
//! a core at 30 fps, the recorder's largest cost after x264). dcv converts
//! the same frame in 2.1 ms. The X server's captures are always BGRx on a
//! little-endian station, so the recording's screen chain is
//! `ximagesrc ! videoconvert ! labscreenconvert`, the videoconvert passing
//! BGRx through untouched and converting only what an unusual X server
//! would send.
//!
//! Registered once per process by [`register`] (`pipeline::build` calls it),
//! so that a launch description can name it.

use std::sync::OnceLock;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer_video as gst_video;

/// The element's factory name, as launch descriptions write it.
pub const FACTORY: &str = "labscreenconvert";

glib::wrapper! {
    /// See the module documentation.
    pub struct ScreenConvert(ObjectSubclass<imp::ScreenConvert>)
        @extends gst_video::VideoFilter, gstreamer_base::BaseTransform, gst::Element, gst::Object;
}

/// Registers [`FACTORY`] with GStreamer (after `gst::init`); later calls
/// return the first call's result.
pub fn register() -> Result<(), glib::BoolError> {
    static DONE: OnceLock<Result<(), glib::BoolError>> = OnceLock::new();
    DONE.get_or_init(|| {
        use gst::prelude::StaticType;
        gst::Element::register(None, FACTORY, gst::Rank::NONE, ScreenConvert::static_type())
    })
    .clone()
}

mod imp {
    use std::sync::LazyLock;

    use dcv_color_primitives as dcp;
    use gstreamer as gst;
    use gstreamer::glib;
    use gstreamer::subclass::prelude::*;
    use gstreamer_video as gst_video;
    use gstreamer_video::prelude::*;
    use gstreamer_video::subclass::prelude::*;

    /// The formats taken: a 24- or 32-bit X server's pixels on a
    /// little-endian machine (B, G, R, padding or alpha in memory).
    const INPUT_FORMATS: [&str; 2] = ["BGRx", "BGRA"];

    static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
        gst::DebugCategory::new(
            crate::screen_convert::FACTORY,
            gst::DebugColorFlags::empty(),
            Some("screen BGRx to I420 (dcv-color-primitives)"),
        )
    });

    #[derive(Default)]
    pub struct ScreenConvert;

    #[glib::object_subclass]
    impl ObjectSubclass for ScreenConvert {
        const NAME: &'static str = "LabScreenConvert";
        type Type = crate::screen_convert::ScreenConvert;
        type ParentType = gst_video::VideoFilter;
    }

    impl ObjectImpl for ScreenConvert {}
    impl GstObjectImpl for ScreenConvert {}

    /// Raw video of any size and rate in `formats`, with `colorimetry`.
    fn raw_video(formats: &[&str], colorimetry: Option<&str>) -> gst::Caps {
        gst::Caps::builder("video/x-raw")
            .field("format", gst::List::new(formats.iter().copied()))
            .field_if_some("colorimetry", colorimetry)
            .field("width", gst::IntRange::new(1, i32::MAX))
            .field("height", gst::IntRange::new(1, i32::MAX))
            .field(
                "framerate",
                gst::FractionRange::new(gst::Fraction::new(0, 1), gst::Fraction::new(i32::MAX, 1)),
            )
            .build()
    }

    fn input_caps() -> gst::Caps {
        raw_video(&INPUT_FORMATS, None)
    }

    fn output_caps() -> gst::Caps {
        raw_video(&["I420"], Some("bt709"))
    }

    impl ElementImpl for ScreenConvert {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "Screen converter",
                    "Filter/Converter/Video",
                    "Converts the screen's BGRx to I420 (BT.709) with SIMD",
                    "usability lab",
                )
            });
            Some(&META)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                vec![
                    gst::PadTemplate::new(
                        "src",
                        gst::PadDirection::Src,
                        gst::PadPresence::Always,
                        &output_caps(),
                    )
                    .expect("a valid src template"),
                    gst::PadTemplate::new(
                        "sink",
                        gst::PadDirection::Sink,
                        gst::PadPresence::Always,
                        &input_caps(),
                    )
                    .expect("a valid sink template"),
                ]
            });
            TEMPLATES.as_ref()
        }
    }

    impl BaseTransformImpl for ScreenConvert {
        const MODE: gstreamer_base::subclass::BaseTransformMode =
            gstreamer_base::subclass::BaseTransformMode::NeverInPlace;
        const PASSTHROUGH_ON_SAME_CAPS: bool = false;
        const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

        /// Size, rate and aspect pass through; only the format (and with it
        /// the colorimetry) changes.
        fn transform_caps(
            &self,
            direction: gst::PadDirection,
            caps: &gst::Caps,
            filter: Option<&gst::Caps>,
        ) -> Option<gst::Caps> {
            let mut other = gst::Caps::new_empty();
            {
                let other = other.get_mut().expect("a new caps is writable");
                for s in caps.iter() {
                    let mut s = s.to_owned();
                    s.remove_fields(["format", "colorimetry", "chroma-site"]);
                    if direction == gst::PadDirection::Sink {
                        s.set("format", "I420");
                        s.set("colorimetry", "bt709");
                    } else {
                        s.set("format", gst::List::new(INPUT_FORMATS));
                    }
                    other.append_structure(s);
                }
            }
            gst::trace!(CAT, imp = self, "{direction:?} {caps} -> {other}");
            Some(match filter {
                Some(f) => f.intersect_with_mode(&other, gst::CapsIntersectMode::First),
                None => other,
            })
        }
    }

    impl VideoFilterImpl for ScreenConvert {
        fn transform_frame(
            &self,
            inframe: &gst_video::VideoFrameRef<&gst::BufferRef>,
            outframe: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
        ) -> Result<gst::FlowSuccess, gst::FlowError> {
            let (width, height) = (inframe.width(), inframe.height());
            let src_format = dcp::ImageFormat {
                pixel_format: dcp::PixelFormat::Bgra,
                color_space: dcp::ColorSpace::Rgb,
                num_planes: 1,
            };
            let dst_format = dcp::ImageFormat {
                pixel_format: dcp::PixelFormat::I420,
                color_space: dcp::ColorSpace::Bt709,
                num_planes: 3,
            };
            let stride = |s: i32| usize::try_from(s).map_err(|_| gst::FlowError::NotSupported);
            let src_strides = [stride(inframe.plane_stride()[0])?];
            let dst_strides = [
                stride(outframe.plane_stride()[0])?,
                stride(outframe.plane_stride()[1])?,
                stride(outframe.plane_stride()[2])?,
            ];
            let src = inframe.plane_data(0).map_err(|e| {
                gst::element_imp_error!(self, gst::CoreError::Failed, ["input frame: {e}"]);
                gst::FlowError::Error
            })?;
            let [y, u, v, _] = outframe.planes_data_mut();
            dcp::convert_image(
                width,
                height,
                &src_format,
                Some(&src_strides),
                &[src],
                &dst_format,
                Some(&dst_strides),
                &mut [y, u, v],
            )
            .map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ["BGRx to I420 of a {width}x{height} frame failed: {e:?}"]
                );
                gst::FlowError::Error
            })?;
            Ok(gst::FlowSuccess::Ok)
        }
    }
}

#[cfg(test)]
mod tests {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    use gstreamer_app as gst_app;
    use gstreamer_video as gst_video;
    use gstreamer_video::VideoFrameExt;

    use crate::screen_convert::{FACTORY, register};

    /// The first frame each of two appsinks got, as I420 planes.
    fn frames(desc: &str) -> (Vec<u8>, Vec<u8>) {
        gst::init().unwrap();
        register().unwrap();
        let pipeline = gst::parse::launch(desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let pull = |name: &str| {
            pipeline
                .by_name(name)
                .unwrap()
                .downcast::<gst_app::AppSink>()
                .unwrap()
        };
        let (a, b) = (pull("a"), pull("b"));
        pipeline.set_state(gst::State::Playing).unwrap();
        let take = |sink: &gst_app::AppSink| {
            let sample = sink
                .try_pull_sample(gst::ClockTime::from_seconds(10))
                .expect("a frame");
            let caps = sample.caps().unwrap();
            let info = gst_video::VideoInfo::from_caps(caps).unwrap();
            assert_eq!(info.format(), gst_video::VideoFormat::I420, "{caps}");
            assert_eq!(
                info.colorimetry().matrix(),
                gst_video::VideoColorMatrix::Bt709
            );
            let frame =
                gst_video::VideoFrameRef::from_buffer_ref_readable(sample.buffer().unwrap(), &info)
                    .unwrap();
            // Tightly packed planes, whatever the strides.
            let mut out = Vec::new();
            for plane in 0..3u32 {
                let stride = frame.plane_stride()[plane as usize] as usize;
                let (w, h) = if plane == 0 {
                    (info.width() as usize, info.height() as usize)
                } else {
                    (
                        info.width().div_ceil(2) as usize,
                        info.height().div_ceil(2) as usize,
                    )
                };
                let data = frame.plane_data(plane).unwrap();
                for row in 0..h {
                    out.extend_from_slice(&data[row * stride..row * stride + w]);
                }
            }
            out
        };
        let frames = (take(&a), take(&b));
        pipeline.set_state(gst::State::Null).unwrap();
        frames
    }

    /// Mean absolute difference of the luma and of the chroma planes.
    fn differences(a: &[u8], b: &[u8], luma: usize) -> (f64, f64) {
        assert_eq!(a.len(), b.len());
        let mean = |x: &[u8], y: &[u8]| {
            x.iter()
                .zip(y)
                .map(|(p, q)| f64::from(p.abs_diff(*q)))
                .sum::<f64>()
                / x.len() as f64
        };
        (mean(&a[..luma], &b[..luma]), mean(&a[luma..], &b[luma..]))
    }

    fn compare(width: u32, height: u32) {
        // One BGRx picture into both converters: colour bars, a gradient
        // and fine detail (smpte: bars, a ramp and noise).
        let desc = format!(
            "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,format=BGRx,width={width},height={height},framerate=30/1 ! tee name=t \
             t. ! queue ! {FACTORY} ! appsink name=a sync=false \
             t. ! queue ! videoconvert ! video/x-raw,format=I420,colorimetry=bt709 ! appsink name=b sync=false"
        );
        let (ours, reference) = frames(&desc);
        let luma = (width * height) as usize;
        let (dy, dc) = differences(&ours, &reference, luma);
        println!("{width}x{height}: mean |difference| luma {dy:.3}, chroma {dc:.3}");
        // Rounding and chroma siting differ; a wrong matrix (BT.601) or
        // range differs by 5-20 levels on the bars.
        assert!(
            dy <= 1.0,
            "luma differs from videoconvert's by {dy:.3} on average"
        );
        assert!(
            dc <= 2.0,
            "chroma differs from videoconvert's by {dc:.3} on average"
        );
    }

    #[test]
    fn converts_like_videoconvert() {
        compare(1280, 720);
    }

    #[test]
    fn converts_odd_sizes() {
        compare(641, 361);
    }

    #[test]
    fn refuses_what_it_cannot_convert() {
        gst::init().unwrap();
        register().unwrap();
        // Without a converter in front, a YUV source cannot link to it.
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers=1 ! video/x-raw,format=NV12 ! {FACTORY} ! fakesink"
        ));
        let refused = match pipeline {
            Err(_) => true,
            Ok(p) => {
                p.set_state(gst::State::Playing).ok();
                let bus = p.bus().unwrap();
                let msg = bus.timed_pop_filtered(
                    gst::ClockTime::from_seconds(10),
                    &[gst::MessageType::Error, gst::MessageType::Eos],
                );
                p.set_state(gst::State::Null).unwrap();
                matches!(msg.map(|m| m.type_()), Some(gst::MessageType::Error))
            }
        };
        assert!(refused, "NV12 was taken as BGRx");
    }
}
