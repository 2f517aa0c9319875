use super::*;

fn tc(s: &str) -> Position {
    Position::Timecode(s.into())
}

/// `text` with its cutdowns expanded, and the spec it parses to.
fn expanded(text: &str) -> (String, crate::Spec) {
    let out = expand(
        text,
        Path::new("."),
        None,
        &crate::files::MediaRoots::new(&[]),
    )
    .expect("expands")
    .expect("has cutdowns");
    let spec = crate::parse_and_validate(&out, None).expect("valid");
    (out, spec)
}

fn seg(a: &str, b: &str) -> SegmentSpec {
    SegmentSpec {
        start: tc(a),
        end: tc(b),
        crossfade_ms: None,
    }
}

#[test]
fn timecode_counts_frames_drop_and_non_drop() {
    let f = FrameRate::Fps25;
    assert_eq!(f.frames("00:00:30:00"), Ok(750));
    assert_eq!(f.frames("01:00:00:00"), Ok(90_000));
    assert!(f.frames("00:00:00:25").is_err());
    let df = FrameRate::Fps2997Df;
    // One minute of drop-frame timecode is 1798 frames; ten minutes 17982.
    assert_eq!(df.frames("00:01:00;02"), Ok(1800));
    assert_eq!(df.frames("00:10:00;00"), Ok(17_982));
    assert_eq!(df.frames("01:00:00;00"), Ok(107_892));
    assert!(df.frames("00:01:00;00").is_err(), "a dropped frame number");
    for n in [0, 1, 1799, 1800, 17_981, 17_982, 107_891, 123_456] {
        assert_eq!(df.frames(&df.timecode(n)), Ok(n), "{n} {}", df.timecode(n));
    }
    assert_eq!(FrameRate::Fps23976.timecode(24), "00:00:01:00");
}

#[test]
fn a_thirty_second_cut_is_thirty_seconds_at_every_rate() {
    let e = EditSpec {
        frame_rate: Some(FrameRate::Fps25),
        segments: vec![
            seg("00:00:00:00", "00:00:12:00"),
            seg("00:00:40:00", "00:00:58:00"),
        ],
        ..EditSpec::default()
    };
    assert!(e.check("e").is_empty());
    for rate in [44_100, 48_000, 96_000] {
        let p = e.pieces(rate, 60 * u64::from(rate)).expect("fits");
        assert_eq!(p.frames, 30 * u64::from(rate));
        let xf = u64::from(rate) / 100; // 10 ms
        let [a, b] = p.pieces.as_slice() else {
            panic!("two pieces")
        };
        assert_eq!(a.record_start, 0);
        assert_eq!(b.record_start, 12 * u64::from(rate) - xf / 2);
        assert_eq!(a.record_end(), b.record_start + xf);
        assert_eq!(b.source_start, 40 * u64::from(rate) - xf / 2);
        assert_eq!(b.record_end(), p.frames);
    }
    // 29.97 drop frame: a :30 is 900 frames = 30.03 s, 1,441,440 samples.
    let df = EditSpec {
        frame_rate: Some(FrameRate::Fps2997Df),
        segments: vec![seg("00:00:10;00", "00:00:40;00")],
        ..EditSpec::default()
    };
    assert_eq!(
        df.pieces(48_000, 60 * 48_000).map(|p| p.frames),
        Ok(1_441_440)
    );
}

#[test]
fn refuses_overlaps_gaps_in_the_source_and_wrong_durations() {
    let mut e = EditSpec {
        frame_rate: Some(FrameRate::Fps24),
        segments: vec![
            seg("00:00:00:00", "00:00:00:02"),
            seg("00:00:10:00", "00:00:20:00"),
        ],
        crossfade_ms: Some(200.0),
        ..EditSpec::default()
    };
    let errs = e.check("titles[0].edit");
    assert!(
        errs.iter()
            .any(|x| x.field == "titles[0].edit.segments[0]"
                && x.message.contains("crossfades overlap")),
        "{errs:?}"
    );
    e.segments[0] = seg("00:00:00:00", "00:00:05:00");
    e.duration = Some(tc("00:00:30:00"));
    let errs = e.check("t");
    assert!(
        errs.iter()
            .any(|x| x.field == "t.duration" && x.message.contains("360 frames")),
        "{errs:?}"
    );
    e.duration = Some(tc("00:00:15:00"));
    assert!(e.check("t").is_empty());
    // Past the end of a 19 s programme.
    let err = e.pieces(48_000, 19 * 48_000).expect_err("outside");
    assert!(
        err.contains("segments[1]") && err.contains("programme"),
        "{err}"
    );
    // Samples without a rate, timecode without a frame rate.
    let s = EditSpec {
        segments: vec![SegmentSpec {
            start: Position::Samples(0),
            end: tc("00:00:01:00"),
            crossfade_ms: None,
        }],
        ..EditSpec::default()
    };
    let errs = s.check("t");
    assert!(
        errs.iter().any(|x| x.field == "t.segments[0].in"),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|x| x.field == "t.segments[0].out"),
        "{errs:?}"
    );
}

#[test]
fn sample_positions_scale_to_the_working_rate() {
    let e = EditSpec {
        sample_rate: Some(48_000),
        segments: vec![SegmentSpec {
            start: Position::Samples(48_000),
            end: Position::Samples(48_000 * 16),
            crossfade_ms: None,
        }],
        ..EditSpec::default()
    };
    let p = e.pieces(96_000, 96_000 * 20).expect("fits");
    assert_eq!(p.frames, 96_000 * 15);
    assert_eq!(p.pieces[0].source_start, 96_000);
}

const EDL: &str = "TITLE: SPOT 30
FCM: NON-DROP FRAME

001  AX       AA     C        01:00:00:00 01:00:10:00 00:00:00:00 00:00:10:00
* FROM CLIP NAME: NIGHT DRIVE
002  AX       AA     C        01:00:30:00 01:00:30:00 00:00:10:00 00:00:10:00
002  AX       AA     D    012 01:00:30:00 01:00:50:00 00:00:10:00 00:00:30:00
003  AX       V      C        01:00:00:00 01:00:30:00 00:00:00:00 00:00:30:00
";

#[test]
fn reads_a_cmx_edl_with_a_dissolve() {
    let e = read_edl(EDL, Some(FrameRate::Fps24)).expect("reads");
    assert_eq!(e.segments.len(), 2, "{e:?}");
    // The 12-frame dissolve is centred 6 frames after the record in.
    assert_eq!(e.segments[0].start, tc("01:00:00:00"));
    assert_eq!(e.segments[0].end, tc("01:00:10:06"));
    assert_eq!(e.segments[1].start, tc("01:00:30:06"));
    assert_eq!(e.segments[1].crossfade_ms, Some(500.0));
    let with_start = EditSpec {
        timecode_start: Some("01:00:00:00".into()),
        ..e
    };
    assert!(with_start.check("t").is_empty());
    let p = with_start.pieces(48_000, 60 * 48_000).expect("fits");
    assert_eq!(p.frames, 30 * 48_000);
    // A rate is needed when the EDL does not say drop frame.
    assert!(read_edl(EDL, None).is_err());
    let gap = EDL.replace("00:00:10:00 00:00:30:00", "00:00:11:00 00:00:31:00");
    let err = read_edl(&gap, Some(FrameRate::Fps24)).expect_err("gap");
    assert!(err.contains("line 7"), "{err}");
}

#[test]
fn cutdowns_expand_into_titles_of_their_own() {
    let text = r#"schema_version = 1
[[titles]]
name = "Night Drive"
reference = "mix.wav"
stems = [{ file = "drums.wav", role = "drums" }]

[[titles.cutdowns]]
name = "30s"
frame_rate = "25"
segments = [{ in = "00:00:00:00", out = "00:00:12:00" }, { in = "00:00:40:00", out = "00:00:58:00" }]

[[titles]]
name = "Other"
stems = [{ file = "b.wav", role = "bass" }]
"#;
    let (_, spec) = expanded(text);
    let names: Vec<&str> = spec.titles.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Night Drive", "Night Drive 30s", "Other"]);
    let cut = &spec.titles[1];
    assert_eq!(cut.reference, None);
    assert_eq!(cut.variants.as_deref(), Some(&["full".to_string()][..]));
    let e = cut.edit.as_ref().expect("edit");
    assert_eq!(e.of.as_deref(), Some("Night Drive"));
    assert_eq!(e.segments.len(), 2);
    // Errors name the cutdown as written.
    let bad = text.replace("00:00:58:00", "00:00:12:00");
    let errs = expand(
        &bad,
        Path::new("."),
        None,
        &crate::files::MediaRoots::new(&[]),
    )
    .expect_err("refused");
    assert!(
        errs.errors
            .iter()
            .any(|e| e.field == "titles[0].cutdowns[0].segments[1].out"),
        "{errs}"
    );
}

#[test]
fn cutdowns_of_a_title_written_with_sub_tables() {
    let text = r#"schema_version = 1
[[titles]]
name = "A"
reference = "Mix.wav"

[[titles.stems]]
file = "d.wav"
role = "drums"

[[titles.cutdowns]]
name = "30s"
frame_rate = "25"
segments = [{ in = "00:00:00:00", out = "00:00:12:00" }]

[[titles.stems]]
file = "b.wav"
role = "bass"
"#;
    let (out, spec) = expanded(text);
    assert_eq!(spec.titles.len(), 2, "{out}");
    for t in &spec.titles {
        assert_eq!(t.stems.len(), 2, "{out}");
    }
}

#[test]
fn explicit_ranges_follow_the_cut() {
    let text = r#"schema_version = 1
[[titles]]
name = "A"
explicit = [[5.0, 6.0], ["00:41.000", "00:42.000"], [20.0, 21.0]]
stems = [{ file = "d.wav", role = "vocals" }]

[[titles.cutdowns]]
name = "30s"
frame_rate = "25"
crossfade_ms = 0
segments = [{ in = "00:00:00:00", out = "00:00:12:00" }, { in = "00:00:40:00", out = "00:00:58:00" }]
"#;
    let (out, spec) = expanded(text);
    let cut: Vec<[f64; 2]> = spec.titles[1]
        .explicit
        .iter()
        .map(|[a, b]| [a.0, b.0])
        .collect();
    // 5–6 s plays at 5–6 s; 41–42 s at 13–14 s; 20–21 s is not in the cut.
    assert_eq!(cut, [[5.0, 6.0], [13.0, 14.0]], "{out}");
}

#[test]
fn edl_mistakes_are_refused() {
    let black = EDL.replace("001  AX  ", "001  BL  ");
    assert!(read_edl(&black, Some(FrameRate::Fps24)).is_err_and(|e| e.contains("black")));
    let drop = EDL.replace("NON-DROP FRAME", "DROP FRAME");
    assert!(read_edl(&drop, Some(FrameRate::Fps24)).is_err_and(|e| e.contains("DROP FRAME")));
    // An odd dissolve is made even: 13 frames cross-fade over 12.
    let odd = EDL.replace("D    012", "D    013");
    let e = read_edl(&odd, Some(FrameRate::Fps24)).expect("reads");
    assert_eq!(e.segments[1].crossfade_ms, Some(500.0));
    assert_eq!(e.segments[1].start, tc("01:00:30:06"));
}
