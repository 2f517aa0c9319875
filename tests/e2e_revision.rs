//! Revisions through the render cache, on a real-instrument session (a
//! General MIDI file through fluidsynth, a voice by espeak-ng): a job
//! renders only the outputs whose key changed, copies the rest from the
//! cache, and every file it delivers is byte-identical to a clean render of
//! the same spec (`--no-cache`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stemforge_testkit::{outputs, read_json, real_session, scratch, stemforge_env, text};

/// The session's spec with a pack of variants: the instrumental is
/// normalized (its own gain), so it is the one output that hears neither
/// the voice nor the full mix's gain.
fn write_spec(dir: &Path, vocal_up_db: f64, voice_presence_db: f64) -> PathBuf {
    let base = std::fs::read_to_string(dir.join("deliverables.toml")).expect("spec");
    let base = base.replace(
        r#"{ node = "peak", freq_hz = 3000.0, gain_db = 2.0, q = 0.8 }"#,
        &format!(
            r#"{{ node = "peak", freq_hz = 3000.0, gain_db = {voice_presence_db:.1}, q = 0.8 }}"#
        ),
    );
    let (head, titles) = base.split_once("[[titles]]").expect("titles");
    let spec = format!(
        "{head}[variants.full]\n[variants.instrumental]\nlevel = \"normalized\"\n[variants.acappella]\n\
         [variants.vocal_up]\namount_db = {vocal_up_db:.1}\n[variants.vocal_down]\namount_db = 2.0\n\
         [variants.stems]\n\n[[titles]]{titles}"
    );
    let p = dir.join("revision.toml");
    std::fs::write(&p, spec).expect("write spec");
    p
}

struct Run {
    manifest: serde_json::Value,
    /// file → (cache status, source job, sha256, audio sha256, gain)
    files: BTreeMap<String, (String, String, String, String, f64)>,
}

fn render(spec: &Path, out: &Path, cache: Option<&Path>) -> Run {
    let mut env: Vec<(&str, &str)> = vec![
        ("SOURCE_DATE_EPOCH", "1700000000"),
        ("STEMFORGE_LOG", "warn"),
    ];
    let dir;
    match cache {
        Some(c) => {
            dir = c.to_str().expect("utf-8").to_string();
            env.push(("STEMFORGE_CACHE", "true"));
            env.push(("STEMFORGE_CACHE_DIR", &dir));
        }
        None => env.push(("STEMFORGE_CACHE", "false")),
    }
    let o = stemforge_env(
        &[
            "render",
            spec.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
            "--workers",
            "2",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o));
    let manifest = read_json(&out.join("manifest.json"));
    let files = outputs(&manifest)
        .iter()
        .map(|o| {
            let path = o["file"]["path"].as_str().expect("path").to_string();
            // The manifest's checksum is the file's, as delivered.
            let on_disk = sha256_hex(&out.join(&path));
            assert_eq!(
                on_disk,
                o["file"]["sha256"].as_str().expect("sha"),
                "{path}"
            );
            (
                path,
                (
                    o["cache"].as_str().unwrap_or("-").to_string(),
                    o["source_job"].as_str().unwrap_or("-").to_string(),
                    on_disk,
                    o["file"]["audio_sha256"]
                        .as_str()
                        .expect("audio")
                        .to_string(),
                    o["gain_db"].as_f64().expect("gain"),
                ),
            )
        })
        .collect();
    Run { manifest, files }
}

fn sha256_hex(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    hex::encode(Sha256::digest(bytes))
}

/// Files whose cache status is `status`.
fn with_status<'a>(r: &'a Run, status: &str) -> Vec<&'a str> {
    r.files
        .iter()
        .filter(|(_, v)| v.0 == status)
        .map(|(k, _)| k.as_str())
        .collect()
}

/// Files whose output was rendered by this job.
fn misses(r: &Run) -> Vec<&str> {
    with_status(r, "miss")
}

/// Every file byte-identical (whole file and audio) to a clean render's.
fn assert_same_files(cached: &Run, clean: &Run, what: &str) {
    assert_eq!(cached.files.len(), clean.files.len(), "{what}");
    for (f, c) in &clean.files {
        let x = &cached.files[f];
        assert_eq!(c.0, "off", "{what}: the clean render has the cache off");
        assert_eq!(
            (&x.2, &x.3),
            (&c.2, &c.3),
            "{what}: {f} differs from a clean render"
        );
    }
    // And every figure the manifest reports of them.
    for (a, b) in outputs(&cached.manifest)
        .iter()
        .zip(outputs(&clean.manifest))
    {
        assert_eq!(a["measurement"], b["measurement"], "{what}");
        assert_eq!(a["verdict"], b["verdict"], "{what}");
        assert_eq!(a["level_changes"], b["level_changes"], "{what}");
    }
}

/// `stemforge cache ARGS --dir CACHE`, which must succeed.
fn cache_cmd(cache: &Path, args: &[&str]) -> std::process::Output {
    let mut a = vec!["cache"];
    a.extend_from_slice(args);
    a.extend(["--dir", cache.to_str().expect("utf-8")]);
    let o = stemforge_env(&a, &[("STEMFORGE_LOG", "warn")]);
    assert!(o.status.success(), "{}", text(&o));
    o
}

fn cache_hits(cache: &Path) -> BTreeMap<String, (u64, u64)> {
    let o = cache_cmd(cache, &["stats", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stats JSON");
    v["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .map(|k| {
            (
                k["kind"].as_str().expect("kind").to_string(),
                (
                    k["entries"].as_u64().expect("entries"),
                    k["hits"].as_u64().expect("hits"),
                ),
            )
        })
        .collect()
}

#[test]
fn a_revision_renders_only_what_changed_and_matches_a_clean_render() {
    let dir = real_session("revision", &["--seconds", "12"]);
    let cache = dir.join("cache");
    let out = dir.join("out");

    // 1. First render: everything rendered, and kept.
    let spec = write_spec(&dir, 1.0, 2.0);
    let first = render(&spec, &out, Some(&cache));
    let n = first.files.len();
    assert!(n >= 10, "{:?}", first.files.keys());
    assert_eq!(misses(&first).len(), n);
    assert_eq!(first.manifest["summary"]["outputs_rendered"], n);
    let job1 = first.files.values().next().expect("a file").1.clone();
    assert_eq!(cache_hits(&cache)["output"], (n as u64, 0));

    // 2. Nothing changed: nothing renders, preflight and analysis are
    // reused, the files are the same bytes.
    let again = render(&spec, &out, Some(&cache));
    assert_eq!(misses(&again), Vec::<&str>::new());
    assert_eq!(again.manifest["summary"]["outputs_from_cache"], n);
    assert_eq!(again.manifest["summary"]["outputs_rendered"], 0);
    for (f, v) in &again.files {
        assert_eq!(v.0, "hit");
        assert_eq!(v.1, job1, "{f}: the job that rendered it");
        assert_eq!(v.2, first.files[f].2, "{f}: same bytes");
    }
    let hits = cache_hits(&cache);
    assert_eq!(hits["preflight"], (1, 1), "{hits:?}");
    assert_eq!(hits["analysis"], (1, 1), "{hits:?}");
    assert_eq!(hits["output"], (n as u64, n as u64), "{hits:?}");

    // 3. The revision: vocal up by 2 dB instead of 1. Only `vocal_up`
    // renders; everything equals a clean render of the changed spec.
    let spec = write_spec(&dir, 2.0, 2.0);
    let rev = render(&spec, &out, Some(&cache));
    assert_eq!(
        misses(&rev),
        vec!["Last-Train_vocal_up_48k24.wav"],
        "{:?}",
        rev.files
    );
    assert_eq!(rev.manifest["summary"]["outputs_rendered"], 1);
    let clean = render(&spec, &dir.join("clean-rev"), None);
    assert_same_files(&rev, &clean, "vocal_up revision");

    // 4. The voice's chain changes: every output that hears the voice (or
    // the full mix's gain, which it moves) renders; the normalized
    // instrumental hears neither and is reused.
    let spec = write_spec(&dir, 2.0, 3.5);
    let chain = render(&spec, &out, Some(&cache));
    let reused = with_status(&chain, "hit");
    assert_eq!(
        reused,
        vec!["Last-Train_instrumental_48k24.wav"],
        "{:?}",
        chain.files
    );
    let clean = render(&spec, &dir.join("clean-chain"), None);
    assert_same_files(&chain, &clean, "voice chain change");

    // 5. The voice's audio changes (-1.5 dB, same length): the same.
    let voice = dir.join("Voice.wav");
    let louder = dir.join("Voice.new.wav");
    sox(&dir, &["-D", "Voice.wav", "Voice.new.wav", "gain", "-1.5"]);
    std::fs::rename(&louder, &voice).expect("replace the voice");
    // The new print of the mix comes with it (the stems summed at unity).
    let mut mix = vec!["-D", "-m"];
    for s in [
        "Drums.wav",
        "Bass.wav",
        "Keys.wav",
        "Horns.wav",
        "Voice.wav",
    ] {
        mix.extend(["-v", "1", s]);
    }
    mix.extend(["-e", "floating-point", "-b", "32", "Mix.wav"]);
    sox(&dir, &mix);
    let audio = render(&spec, &out, Some(&cache));
    let reused = with_status(&audio, "hit");
    assert_eq!(
        reused,
        vec!["Last-Train_instrumental_48k24.wav"],
        "{:?}",
        audio.files
    );
    assert_ne!(
        audio.files["Last-Train_full_48k24.wav"].3, chain.files["Last-Train_full_48k24.wav"].3,
        "the full mix hears the new voice"
    );
    let clean = render(&spec, &dir.join("clean-audio"), None);
    assert_same_files(&audio, &clean, "voice audio change");

    // 6. A kept file damaged in place (its delivered hard link edited):
    // the cache notices on reuse, forgets it and renders that output again.
    use std::os::unix::fs::MetadataExt;
    let full = out.join("Last-Train_full_48k24.wav");
    let ino = std::fs::metadata(&full).expect("full").ino();
    let kept = walk(&cache.join("outputs"))
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == ino))
        .expect("the full mix is kept by hard link");
    let mut bytes = std::fs::read(&kept).expect("read kept");
    let at = bytes.len() - 100;
    bytes[at] ^= 0x55;
    std::fs::write(&kept, bytes).expect("damage");
    let healed = render(&spec, &out, Some(&cache));
    assert_eq!(misses(&healed), vec!["Last-Train_full_48k24.wav"]);
    assert_same_files(&healed, &clean, "after a damaged cache entry");

    // 7. Pruning to nothing empties it; the next render renders all.
    cache_cmd(&cache, &["prune", "--all"]);
    assert!(cache_hits(&cache).is_empty());
    assert!(walk(&cache.join("outputs")).is_empty());
    let cold = render(&spec, &out, Some(&cache));
    assert_eq!(misses(&cold).len(), n);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_cache_stays_under_its_size() {
    let dir = scratch("cache-bound");
    let d = dir.to_str().expect("utf-8");
    let cache = dir.join("cache");
    let c = cache.to_str().expect("utf-8");
    let env = [
        ("STEMFORGE_CACHE", "true"),
        ("STEMFORGE_CACHE_DIR", c),
        // About two 6-second stereo 24-bit files.
        ("STEMFORGE_CACHE_MAX_GB", "0.004"),
        ("STEMFORGE_LOG", "warn"),
    ];
    let o = stemforge_env(&["demo", d, "--seconds", "6", "--workers", "2"], &env);
    assert!(o.status.success(), "{}", text(&o));
    let o = cache_cmd(&cache, &["stats", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stats JSON");
    let bytes = v["bytes"].as_u64().expect("bytes");
    assert!(bytes <= 4_000_000, "{v}");
    assert!(v["entries"].as_u64().expect("entries") >= 1, "{v}");
    let on_disk: u64 = walk(&cache.join("outputs"))
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    assert!(on_disk <= 4_000_000, "{on_disk} bytes of kept files");
    let _ = std::fs::remove_dir_all(&dir);
}

fn sox(dir: &Path, args: &[&str]) {
    let o = std::process::Command::new("sox")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run sox");
    assert!(
        o.status.success(),
        "sox {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Through a coordinator and worker processes: the cache is the
/// coordinator's (`DATA_DIR/cache`), named in every lease, so a second job
/// of the same spec renders nothing and names the first as its source.
#[test]
fn a_coordinator_serves_a_second_job_from_its_cache() {
    use std::time::Duration;
    use stemforge_testkit::cluster::Cluster;
    let mut c = Cluster::builder("cache-cluster")
        .env("STEMFORGE_CACHE", "true")
        .env("STEMFORGE_POLL_WAIT_MS", "300")
        .start()
        .expect("cluster");
    c.start_worker("w1");
    c.start_worker("w2");
    let session = c.dir().join("session");
    let s = session.to_str().expect("utf-8");
    let o = stemforge_env(
        &["demo", s, "--seconds", "6", "--workers", "2"],
        &[("STEMFORGE_LOG", "warn")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let spec = session.join("deliverables.toml");
    let mut runs = Vec::new();
    for name in ["first", "second"] {
        let out = c.dir().join(name);
        let job = c.submit(&spec, &out, &[]);
        let st = c.wait_job(&job, Duration::from_secs(180));
        assert_eq!(st["state"], "succeeded", "{st}\n{}", c.logs());
        runs.push((job, read_json(&out.join("manifest.json"))));
    }
    let (job1, first) = &runs[0];
    let (_, second) = &runs[1];
    let n = outputs(first).len();
    assert!(n >= 10);
    for (a, b) in outputs(first).iter().zip(outputs(second)) {
        assert_eq!(a["cache"], "miss");
        assert_eq!(b["cache"], "hit", "{b}");
        assert_eq!(b["source_job"].as_str(), Some(job1.as_str()));
        assert_eq!(a["file"]["audio_sha256"], b["file"]["audio_sha256"]);
        assert_eq!(a["measurement"], b["measurement"]);
    }
    assert_eq!(second["summary"]["outputs_from_cache"], n);
    assert!(c.data_dir().join("cache/index.sqlite").is_file());
}
