//! Task execution: what a worker does with a leased task. No gRPC here: the
//! service module calls [`execute`] with the task and its dependencies' results.
//!
//! # Failure classes
//!
//! A failed task is reported to the coordinator as *transient* (queued again
//! after a growing backoff, up to `max_attempts`) or *permanent* (failed for
//! good at once). [`TaskError::class`] decides, with [`classify_io`] for
//! every error that carries an `std::io::Error` (reads of inputs, writes of
//! outputs, `write_atomically`) and [`classify_rpc`] for calls to the
//! coordinator. The rule: transient when another attempt, later or on
//! another worker, can succeed without anyone changing anything (space
//! freed by a cleanup, a share back after a hiccup); permanent when an
//! operator or the spec's author must act first, so retrying only delays
//! the report. A transient failure of the storage every worker shares (an
//! input's or the output folder's I/O: [`TaskError::is_shared_cause`]) is
//! reported as a shared cause and does not count against the worker.
//!
//! | Failure | Recognised by | Class |
//! |---|---|---|
//! | Disk full (`ENOSPC`) | `ErrorKind::StorageFull` | transient |
//! | Quota exceeded (`EDQUOT`) | `ErrorKind::QuotaExceeded` | transient |
//! | Device or share I/O error (`EIO`, `EREMOTEIO`) | raw OS error | transient |
//! | Stale network file handle (`ESTALE`) | `ErrorKind::StaleNetworkFileHandle` | transient |
//! | Network file system hiccup (`ENOTCONN`, `ECONNRESET`, `ECONNREFUSED`, `ECONNABORTED`, `EPIPE`, `ENETDOWN`, `ENETUNREACH`, `EHOSTUNREACH`, `EHOSTDOWN`, `ENOLINK`, `ECOMM`, `EPROTO`, `ETIME`, `ENOLCK`) | `ErrorKind` or raw OS error | transient |
//! | Timed out (`ETIMEDOUT`) | `ErrorKind::TimedOut` | transient |
//! | Try again / interrupted / busy (`EAGAIN`, `EINTR`, `EBUSY`) | `ErrorKind::WouldBlock`, `Interrupted`, `ResourceBusy` | transient |
//! | Worker out of resources (`ENOMEM`, `EMFILE`, `ENFILE`, `ENOBUFS`) | `ErrorKind::OutOfMemory` or raw OS error | transient |
//! | File or folder not found (`ENOENT`: a share remounting, a stem not yet copied) | `ErrorKind::NotFound` | transient |
//! | Permission denied (`EACCES`, `EPERM`) | `ErrorKind::PermissionDenied` | permanent: an operator fixes the folder's owner or mode; three retries change nothing |
//! | Read-only file system (`EROFS`) | `ErrorKind::ReadOnlyFilesystem` | permanent: an operator remounts it |
//! | A path that cannot work (`ENOTDIR`, `EISDIR`, `ENOTEMPTY`, `EEXIST`, `ENAMETOOLONG`, `ELOOP`, `EXDEV`, `EFBIG`) | `ErrorKind` or raw OS error | permanent |
//! | Bad content (`InvalidData`, `InvalidInput`, `UnexpectedEof`, `Unsupported`) | `ErrorKind` | permanent |
//! | Any other I/O error | — | transient: `max_attempts` bounds the cost of a wrong guess |
//! | A coordinator call that fails or times out (`Unavailable`, `DeadlineExceeded`, `Cancelled`, `Unknown`, `ResourceExhausted`, `Aborted`) | [`classify_rpc`] | transient |
//! | A coordinator call refused (a stale lease, a bad token, any other code) | [`classify_rpc`] | permanent |
//! | Input outside the media roots, a bad spec, an unusable input | [`TaskError::Input`] | permanent |
//! | Preflight errors in the stems | [`TaskError::Preflight`] | permanent |
//! | Undecodable input: unsupported or corrupt container or data, no audio track | [`DecodeError`] other than `Open`/`Io` | permanent |
//! | A stem at a rate or channel count we cannot convert, an edit outside the programme | [`SourceError::Rate`], [`SourceError::Channels`], [`SourceError::Edit`] | permanent |
//! | A read error on an input | [`DecodeError::Open`], [`DecodeError::Io`] | its `io::Error`'s class |
//! | A write error on an output | [`OutputError::Io`], [`OutputError::Wav`] holding an I/O error | its `io::Error`'s class |
//! | An output the WAV format cannot hold (over 4 GiB, unsupported format) | [`OutputError::Wav`] otherwise | permanent |
//! | An output that reads back wrong | [`OutputError::Verify`] | transient: the storage, not the input, is at fault |
//! | Loudness meter refused the audio | [`TaskError::Meter`] | permanent: the same audio fails the same way |
//! | A task record this worker cannot read, a crashed task thread | [`TaskError::Internal`] | transient: another worker (another version, during an upgrade) may run it |
//! | Cancelled | [`TaskError::Cancelled`] | permanent (never reported as a failure) |

pub mod analyze;
pub mod effective;
mod live;
pub mod manifest;
pub mod metadata;
pub mod preflight;
pub mod render;
mod reuse;
pub mod signal_cache;
pub mod stream;
pub mod trim;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use deliverables_spec::{LoadedSpec, TaskKind};
use serde::Serialize;

use crate::bwf::BwfError;
use crate::decode::DecodeError;
use crate::meter::MeterError;
use crate::output::OutputError;
use crate::source::SourceError;

/// Everything a task needs besides its kind.
pub struct TaskContext<'a> {
    pub spec: &'a LoadedSpec,
    pub job_id: &'a str,
    /// Where outputs go (absolute).
    pub output_dir: PathBuf,
    /// Results of the dependencies, by task id.
    pub deps: &'a BTreeMap<String, DepOutcome>,
    /// Every task's outcome, a page at a time (the manifest task's input).
    pub outcomes: Option<&'a dyn manifest::OutcomePages>,
    /// Job submission time, Unix ms.
    pub submitted_unix_ms: i64,
    /// BWF origination time, Unix seconds (decided at submission).
    pub origination_unix_s: i64,
    pub cancel: &'a AtomicBool,
    pub progress: &'a (dyn Fn(f64) + Sync),
    /// The render cache (`None`: render everything).
    pub cache: Option<&'a crate::cache::RenderCache>,
}

impl TaskContext<'_> {
    pub fn check_cancel(&self) -> Result<(), TaskError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(TaskError::Cancelled)
        } else {
            Ok(())
        }
    }
}

pub use deliverables_spec::contract::DepOutcome;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Meter(#[from] MeterError),
    /// Preflight found errors in the title's stems.
    #[error("{0}")]
    Preflight(String),
    /// The input cannot give a usable deliverable (e.g. a silent full mix).
    #[error("{0}")]
    Input(String),
    /// The task record or its dependencies are not what this worker expects.
    #[error("{0}")]
    Internal(String),
    #[error("cancelled")]
    Cancelled,
}

impl From<crate::dialogue::DialogueError> for TaskError {
    fn from(e: crate::dialogue::DialogueError) -> Self {
        match e {
            crate::dialogue::DialogueError::Source(s) => TaskError::Source(s),
            crate::dialogue::DialogueError::Meter(m) => TaskError::Meter(m),
        }
    }
}

impl From<crate::measure_file::MeasureError> for TaskError {
    fn from(e: crate::measure_file::MeasureError) -> Self {
        match e {
            crate::measure_file::MeasureError::Decode(d) => TaskError::Decode(d),
            crate::measure_file::MeasureError::Meter(m) => TaskError::Meter(m),
            crate::measure_file::MeasureError::Dialogue(d) => d.into(),
            e @ crate::measure_file::MeasureError::InvalidSamples { .. } => {
                TaskError::Input(e.to_string())
            }
        }
    }
}

/// Whether another attempt of a failed task may succeed (see the module's
/// table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Retried with backoff by the coordinator while attempts remain.
    Transient,
    /// Failed for good at once.
    Permanent,
}

/// The class of an I/O error, by its `ErrorKind`, else by its raw OS error
/// (codes std does not give a stable kind). Rows of the module's table.
pub fn classify_io(e: &std::io::Error) -> FailureClass {
    use FailureClass::{Permanent, Transient};
    use std::io::ErrorKind as K;
    match e.kind() {
        K::StorageFull
        | K::QuotaExceeded
        | K::StaleNetworkFileHandle
        | K::TimedOut
        | K::WouldBlock
        | K::Interrupted
        | K::ResourceBusy
        | K::OutOfMemory
        | K::NotFound
        | K::NotConnected
        | K::ConnectionReset
        | K::ConnectionRefused
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::NetworkDown
        | K::NetworkUnreachable
        | K::HostUnreachable => Transient,
        K::PermissionDenied
        | K::ReadOnlyFilesystem
        | K::NotADirectory
        | K::IsADirectory
        | K::DirectoryNotEmpty
        | K::AlreadyExists
        | K::InvalidFilename
        | K::CrossesDevices
        | K::FileTooLarge
        | K::InvalidData
        | K::InvalidInput
        | K::UnexpectedEof
        | K::Unsupported => Permanent,
        _ => classify_os_error(e.raw_os_error()),
    }
}

/// OS error codes std leaves uncategorised: `ELOOP` is a path that cannot
/// work; the rest (and anything unknown) are worth another attempt.
fn classify_os_error(code: Option<i32>) -> FailureClass {
    #[cfg(unix)]
    if code == Some(libc::ELOOP) {
        return FailureClass::Permanent;
    }
    #[cfg(not(unix))]
    let _ = code;
    // EIO, EREMOTEIO, EHOSTDOWN, ENOLINK, ECOMM, EPROTO, ETIME, ENOLCK,
    // EMFILE, ENFILE, ENOBUFS and errors we do not know: transient.
    FailureClass::Transient
}

/// The class of a failed call to the coordinator: it was unreachable, busy
/// or too slow (transient), or it refused the call (permanent).
pub fn classify_rpc(code: tonic::Code) -> FailureClass {
    use tonic::Code as C;
    match code {
        C::Unavailable
        | C::DeadlineExceeded
        | C::Cancelled
        | C::Unknown
        | C::ResourceExhausted
        | C::Aborted => FailureClass::Transient,
        _ => FailureClass::Permanent,
    }
}

fn classify_decode(e: &DecodeError) -> FailureClass {
    match e {
        DecodeError::Open { source, .. } | DecodeError::Io { source, .. } => classify_io(source),
        DecodeError::Unsupported { .. }
        | DecodeError::Corrupt { .. }
        | DecodeError::NoAudioTrack { .. }
        | DecodeError::InvalidRequest { .. } => FailureClass::Permanent,
    }
}

fn classify_bwf(e: &BwfError) -> FailureClass {
    match e {
        BwfError::Io(source) | BwfError::Open { source, .. } => classify_io(source),
        BwfError::InFile { source, .. } => classify_bwf(source),
        // Follows a write that failed part-way: an I/O error.
        BwfError::Poisoned => FailureClass::Transient,
        _ => FailureClass::Permanent,
    }
}

impl TaskError {
    /// Transient or permanent: the module's table.
    pub fn class(&self) -> FailureClass {
        use FailureClass::{Permanent, Transient};
        match self {
            TaskError::Source(SourceError::Decode(d)) | TaskError::Decode(d) => classify_decode(d),
            TaskError::Source(
                SourceError::Rate { .. } | SourceError::Channels { .. } | SourceError::Edit(_),
            ) => Permanent,
            TaskError::Output(OutputError::Io { source, .. }) => classify_io(source),
            TaskError::Output(OutputError::Wav { source, .. }) => classify_bwf(source),
            TaskError::Output(OutputError::Verify { .. }) => Transient,
            TaskError::Meter(_) => Permanent,
            TaskError::Preflight(_) | TaskError::Input(_) => Permanent,
            TaskError::Internal(_) => Transient,
            TaskError::Cancelled => Permanent,
        }
    }

    /// Whether the failure comes from the files every worker shares (an
    /// input's or the output folder's storage) rather than from this
    /// worker: then it does not count against the worker.
    pub fn is_shared_cause(&self) -> bool {
        match self {
            TaskError::Source(SourceError::Decode(d)) | TaskError::Decode(d) => {
                matches!(d, DecodeError::Open { .. } | DecodeError::Io { .. })
            }
            TaskError::Output(OutputError::Io { .. }) => true,
            TaskError::Output(OutputError::Wav { source, .. }) => matches!(
                source,
                BwfError::Io(_) | BwfError::Open { .. } | BwfError::InFile { .. }
            ),
            _ => false,
        }
    }

    /// Whether running the task again could succeed: [`TaskError::class`]
    /// is transient.
    pub fn is_retryable(&self) -> bool {
        self.class() == FailureClass::Transient
    }
}

/// Runs a task; returns its result document.
pub fn execute(kind: &TaskKind, ctx: &TaskContext<'_>) -> Result<serde_json::Value, TaskError> {
    match kind {
        TaskKind::Preflight { title } => to_json(preflight::preflight(ctx, title)),
        TaskKind::Analyze { title, rate } => to_json(analyze::analyze(ctx, title, *rate)),
        TaskKind::Render {
            title,
            variants,
            rate,
        } => to_json(render::render(ctx, title, variants, *rate)),
        TaskKind::Manifest { bundle } => to_json(manifest::write_manifest(
            ctx,
            bundle.as_deref().map(std::path::Path::new),
        )),
    }
}

fn to_json<T: Serialize>(v: Result<T, TaskError>) -> Result<serde_json::Value, TaskError> {
    v.and_then(|r| serde_json::to_value(r).map_err(|e| TaskError::Internal(e.to_string())))
}

#[cfg(test)]
mod tests {
    //! One test per row of the module's failure table.

    use std::io::{self, Seek, SeekFrom, Write};
    use std::path::PathBuf;

    use super::*;
    use crate::bwf::{Bext, BwfWriter, WavFormat};
    use FailureClass::{Permanent, Transient};

    fn os(code: i32) -> FailureClass {
        classify_io(&io::Error::from_raw_os_error(code))
    }

    fn kind(k: io::ErrorKind) -> FailureClass {
        classify_io(&io::Error::new(k, "test"))
    }

    fn output_io(code: i32) -> TaskError {
        TaskError::Output(OutputError::Io {
            path: PathBuf::from("out/x.wav"),
            source: io::Error::from_raw_os_error(code),
        })
    }

    #[test]
    fn storage_failures_are_a_shared_cause_and_the_rest_the_workers() {
        assert!(output_io(libc::ENOSPC).is_shared_cause());
        assert!(output_io(libc::EIO).is_shared_cause());
        assert!(!TaskError::Internal("task thread failed".into()).is_shared_cause());
        assert!(!TaskError::Input("silent".into()).is_shared_cause());
    }

    #[test]
    fn disk_full_is_transient() {
        assert_eq!(os(libc::ENOSPC), Transient);
        assert_eq!(kind(io::ErrorKind::StorageFull), Transient);
    }

    #[test]
    fn quota_exceeded_is_transient() {
        assert_eq!(os(libc::EDQUOT), Transient);
    }

    #[test]
    fn device_io_errors_are_transient() {
        assert_eq!(os(libc::EIO), Transient);
        assert_eq!(os(libc::EREMOTEIO), Transient);
    }

    #[test]
    fn a_stale_network_file_handle_is_transient() {
        assert_eq!(os(libc::ESTALE), Transient);
    }

    #[test]
    fn network_file_system_hiccups_are_transient() {
        for code in [
            libc::ENOTCONN,
            libc::ECONNRESET,
            libc::ECONNREFUSED,
            libc::ECONNABORTED,
            libc::EPIPE,
            libc::ENETDOWN,
            libc::ENETUNREACH,
            libc::EHOSTUNREACH,
            libc::EHOSTDOWN,
            libc::ENOLINK,
            libc::ECOMM,
            libc::EPROTO,
            libc::ETIME,
            libc::ENOLCK,
        ] {
            assert_eq!(os(code), Transient, "errno {code}");
        }
    }

    #[test]
    fn a_timeout_is_transient() {
        assert_eq!(os(libc::ETIMEDOUT), Transient);
    }

    #[test]
    fn try_again_interrupted_and_busy_are_transient() {
        for code in [libc::EAGAIN, libc::EINTR, libc::EBUSY] {
            assert_eq!(os(code), Transient, "errno {code}");
        }
    }

    #[test]
    fn a_worker_out_of_resources_is_transient() {
        for code in [libc::ENOMEM, libc::EMFILE, libc::ENFILE, libc::ENOBUFS] {
            assert_eq!(os(code), Transient, "errno {code}");
        }
    }

    #[test]
    fn not_found_is_transient() {
        assert_eq!(os(libc::ENOENT), Transient);
    }

    #[test]
    fn permission_denied_is_permanent() {
        assert_eq!(os(libc::EACCES), Permanent);
        assert_eq!(os(libc::EPERM), Permanent);
    }

    #[test]
    fn a_read_only_file_system_is_permanent() {
        assert_eq!(os(libc::EROFS), Permanent);
    }

    #[test]
    fn a_path_that_cannot_work_is_permanent() {
        for code in [
            libc::ENOTDIR,
            libc::EISDIR,
            libc::ENOTEMPTY,
            libc::EEXIST,
            libc::ENAMETOOLONG,
            libc::ELOOP,
            libc::EXDEV,
            libc::EFBIG,
        ] {
            assert_eq!(os(code), Permanent, "errno {code}");
        }
    }

    #[test]
    fn bad_content_is_permanent() {
        for k in [
            io::ErrorKind::InvalidData,
            io::ErrorKind::InvalidInput,
            io::ErrorKind::UnexpectedEof,
            io::ErrorKind::Unsupported,
        ] {
            assert_eq!(kind(k), Permanent, "{k:?}");
        }
    }

    #[test]
    fn any_other_io_error_is_transient() {
        assert_eq!(classify_io(&io::Error::other("odd")), Transient);
        assert_eq!(os(libc::ENOTTY), Transient);
    }

    #[test]
    fn a_coordinator_call_that_fails_or_times_out_is_transient() {
        for c in [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Cancelled,
            tonic::Code::Unknown,
            tonic::Code::ResourceExhausted,
            tonic::Code::Aborted,
        ] {
            assert_eq!(classify_rpc(c), Transient, "{c:?}");
        }
    }

    #[test]
    fn a_coordinator_call_refused_is_permanent() {
        for c in [
            tonic::Code::FailedPrecondition,
            tonic::Code::NotFound,
            tonic::Code::PermissionDenied,
            tonic::Code::Unauthenticated,
            tonic::Code::InvalidArgument,
        ] {
            assert_eq!(classify_rpc(c), Permanent, "{c:?}");
        }
    }

    #[test]
    fn outside_the_media_roots_a_bad_spec_or_an_unusable_input_is_permanent() {
        let e = TaskError::Input("output folder /x is outside this worker's media roots".into());
        assert_eq!(e.class(), Permanent);
        assert!(!e.is_retryable());
    }

    #[test]
    fn preflight_errors_are_permanent() {
        assert_eq!(TaskError::Preflight("2 errors".into()).class(), Permanent);
    }

    #[test]
    fn undecodable_input_is_permanent() {
        let path = PathBuf::from("stems/x.wav");
        for d in [
            DecodeError::Unsupported {
                path: path.clone(),
                reason: "no reader".into(),
            },
            DecodeError::Corrupt {
                path: path.clone(),
                frame: 1,
                reason: "bad crc".into(),
            },
            DecodeError::NoAudioTrack { path: path.clone() },
        ] {
            assert_eq!(TaskError::Decode(d).class(), Permanent);
        }
        let wrapped = TaskError::Source(SourceError::Decode(DecodeError::NoAudioTrack { path }));
        assert_eq!(wrapped.class(), Permanent);
    }

    #[test]
    fn a_stem_we_cannot_convert_is_permanent() {
        let e = TaskError::Source(SourceError::Channels {
            path: PathBuf::from("stems/x.wav"),
            channels: 4,
            layout: deliverables_spec::model::Layout::Stereo,
        });
        assert_eq!(e.class(), Permanent);
        let e = TaskError::Source(SourceError::Rate {
            path: PathBuf::from("stems/x.wav"),
            rate: 48_000,
            source: crate::dsp::resample::ResampleError::NoChannels,
        });
        assert_eq!(e.class(), Permanent);
    }

    #[test]
    fn a_read_error_on_an_input_takes_its_io_class() {
        let path = PathBuf::from("stems/x.wav");
        let open = |code| DecodeError::Open {
            path: path.clone(),
            source: io::Error::from_raw_os_error(code),
        };
        assert_eq!(TaskError::Decode(open(libc::ENOENT)).class(), Transient);
        assert_eq!(TaskError::Decode(open(libc::EACCES)).class(), Permanent);
        let mid = DecodeError::Io {
            path: path.clone(),
            frame: 9,
            source: io::Error::from_raw_os_error(libc::EIO),
        };
        assert_eq!(
            TaskError::Source(SourceError::Decode(mid)).class(),
            Transient
        );
        // A real read: a folder where a stem should be is no retry.
        let dir = stemforge_testkit::scratch("classify-open-dir");
        let Err(err) = crate::decode::StemReader::open(&dir) else {
            panic!("a folder opened as a stem");
        };
        assert_eq!(TaskError::Decode(err).class(), Permanent);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file that takes the header, then fails every write with `code`.
    struct Failing {
        code: i32,
        pos: u64,
        allow: u64,
    }
    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.pos + buf.len() as u64 > self.allow {
                return Err(io::Error::from_raw_os_error(self.code));
            }
            self.pos += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Seek for Failing {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            if let SeekFrom::Start(p) = to {
                self.pos = p;
            }
            Ok(self.pos)
        }
    }

    /// The error a WAV writer gives when the disk fails under it.
    fn audio_write_error(code: i32) -> TaskError {
        let format = WavFormat {
            sample_rate: 48_000,
            channels: 2,
            bits_per_sample: 24,
            float: false,
            channel_mask: None,
        };
        let f = Failing {
            code,
            pos: 0,
            allow: 4096,
        };
        let mut w = BwfWriter::new(f, &format, &Bext::default()).expect("header fits");
        let err = w.write_samples(&[0u8; 6 * 4096]).expect_err("disk fails");
        TaskError::Output(OutputError::Wav {
            path: PathBuf::from("out/.x.wav.1-0.partial"),
            source: err,
        })
    }

    #[test]
    fn a_write_error_on_an_output_takes_its_io_class() {
        // Once the other way round: ENOSPC on the audio failed for good,
        // EACCES on the folder was retried.
        let full = audio_write_error(libc::ENOSPC);
        assert_eq!(full.class(), Transient, "{full}");
        assert!(
            full.to_string().contains("No space left on device"),
            "{full}"
        );
        assert_eq!(audio_write_error(libc::EIO).class(), Transient);
        assert_eq!(output_io(libc::EACCES).class(), Permanent);
        assert_eq!(output_io(libc::EDQUOT).class(), Transient);
        // `write_atomically` (the manifest, CSV and report).
        let dir = stemforge_testkit::scratch("classify-atomically");
        let target = dir.join("manifest.json");
        std::fs::create_dir_all(target.join("in-the-way")).expect("mkdir");
        let e = manifest::write_atomically(&target, b"{}").expect_err("a folder is in the way");
        assert!(
            matches!(&e, TaskError::Output(OutputError::Io { source, .. }) if source.kind() == io::ErrorKind::IsADirectory || source.kind() == io::ErrorKind::DirectoryNotEmpty),
            "{e:?}"
        );
        assert_eq!(e.class(), Permanent);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_output_the_wav_format_cannot_hold_is_permanent() {
        for source in [
            BwfError::TooLarge { bytes: 1 << 33 },
            BwfError::UnsupportedFormat("12-bit".into()),
        ] {
            let e = TaskError::Output(OutputError::Wav {
                path: PathBuf::from("out/x.wav"),
                source,
            });
            assert_eq!(e.class(), Permanent);
        }
    }

    #[test]
    fn an_output_that_reads_back_wrong_is_transient() {
        let e = TaskError::Output(OutputError::Verify {
            path: PathBuf::from("out/x.wav"),
            reason: "no data chunk".into(),
        });
        assert_eq!(e.class(), Transient);
    }

    #[test]
    fn a_meter_refusal_is_permanent() {
        let Err(err) = crate::meter::Meter::new(1, 0, crate::meter::MeterKind::Full) else {
            panic!("0 Hz is refused");
        };
        assert_eq!(TaskError::Meter(err).class(), Permanent);
    }

    #[test]
    fn an_internal_error_is_transient() {
        assert_eq!(
            TaskError::Internal("task thread failed".into()).class(),
            Transient
        );
    }

    #[test]
    fn cancelled_is_permanent() {
        assert_eq!(TaskError::Cancelled.class(), Permanent);
    }
}
