//! Fuzzing on stable Rust of every parser that takes outside input: bundle
//! manifests, `events.jsonl`, journey and station TOML, wire events and the
//! recorder's clock math, the analyzer's JSON outputs, and the CTranslate2 and
//! GGML model readers.
//!
//! Why not cargo-fuzz: it needs nightly and libFuzzer, and the suite must run
//! on the stable toolchain everywhere, in `cargo test` too. So this is a small
//! fuzzer of its own ([`runner`]): per target, inputs come either from a
//! structure-aware generator ([`targets`], using `arbitrary::Unstructured` to
//! edit a parsed seed's tree or build a model file field by field, so that
//! most inputs get past the first syntax check), or from byte-level mutation
//! ([`mutate`]) of seeds taken from real files in the repository ([`seeds`])
//! and of generated inputs. Panics are caught, hangs are caught by a watchdog,
//! and the first failing input of each target is written out.

pub mod ct2;
pub mod mutate;
pub mod rng;
pub mod runner;
pub mod seeds;
pub mod targets;
pub mod tree;
