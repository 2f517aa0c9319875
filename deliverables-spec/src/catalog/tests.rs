use super::*;
use crate::model::Spec;

/// A fresh folder for one test, with empty files (expansion reads names only).
fn tree(test: &str, files: &[&str]) -> PathBuf {
    let root = std::env::temp_dir().join(format!("sf-catalog-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for f in files {
        let p = root.join(f);
        if f.ends_with('/') {
            std::fs::create_dir_all(&p).expect("mkdir");
            continue;
        }
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, b"").expect("write");
    }
    std::fs::create_dir_all(&root).expect("mkdir");
    root
}

fn write(root: &Path, name: &str, text: &str) -> PathBuf {
    let p = root.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn load(root: &Path, spec: &str) -> Result<crate::LoadedSpec, SpecErrors> {
    crate::load_file(&write(root, "spec.toml", spec))
}

fn errors(r: Result<crate::LoadedSpec, SpecErrors>) -> Vec<String> {
    match r {
        Ok(l) => panic!("loaded, expected errors:\n{}", l.text),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

fn has(errs: &[String], parts: &[&str]) {
    assert!(
        errs.iter().any(|e| parts.iter().all(|p| e.contains(p))),
        "no error with {parts:?} in:\n{}",
        errs.join("\n")
    );
}

fn roles(spec: &Spec, title: &str) -> Vec<(String, Role)> {
    let t = spec
        .titles
        .iter()
        .find(|t| t.name == title)
        .unwrap_or_else(|| panic!("no title {title}"));
    t.stems
        .iter()
        .map(|s| {
            let name = s.file.rsplit('/').next().unwrap_or(&s.file).to_string();
            (name, s.role)
        })
        .collect()
}

const HEAD: &str = "schema_version = 1\n";

#[test]
fn folders_become_titles_with_roles_and_reference_from_names() {
    let root = tree(
        "folders",
        &[
            "incoming/Night Drive/01_Kick.wav",
            "incoming/Night Drive/02 Snare.wav",
            "incoming/Night Drive/Song - Bass DI.aif",
            "incoming/Night Drive/LeadVox.wav",
            "incoming/Night Drive/BGV.wav",
            "incoming/Night Drive/NightDrive_PRINT.wav",
            "incoming/Night Drive/.DS_Store",
            "incoming/Night Drive/sessions/old.wav",
            "incoming/Alpha/DX_main.wav",
            "incoming/Alpha/SFX Whooshes.flac",
            "incoming/Alpha/MX.WAV",
            "incoming/Alpha/ref.wav",
            "incoming/readme.txt",
            "incoming/.Trash/old.wav",
        ],
    );
    let l = load(
        &root,
        &format!("{HEAD}[catalog]\nfolders = [\"incoming/*\"]\n"),
    )
    .expect("loads");
    let names: Vec<&str> = l.spec.titles.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Alpha", "Night Drive"], "sorted by folder");
    assert_eq!(
        roles(&l.spec, "Night Drive"),
        [
            ("01_Kick.wav".to_string(), Role::Drums),
            ("02 Snare.wav".into(), Role::Drums),
            ("BGV.wav".into(), Role::BackingVocals),
            ("LeadVox.wav".into(), Role::Vocals),
            ("Song - Bass DI.aif".into(), Role::Bass),
        ]
    );
    let nd = l.title("Night Drive").expect("title");
    assert_eq!(
        nd.reference.as_deref(),
        Some("incoming/Night Drive/NightDrive_PRINT.wav")
    );
    assert_eq!(nd.stems[0].file, "incoming/Night Drive/01_Kick.wav");
    assert_eq!(
        roles(&l.spec, "Alpha"),
        [
            ("DX_main.wav".to_string(), Role::Dialogue),
            ("MX.WAV".into(), Role::Music),
            ("SFX Whooshes.flac".into(), Role::Fx),
        ]
    );
    // The expanded text is what is hashed and cut per title.
    assert!(!l.text.contains("[catalog]"), "{}", l.text);
    assert_eq!(l.sha256, crate::plan::spec_hash(&l.text));
    let scoped = crate::scope::split_titles(&l.text).expect("splits");
    assert_eq!(scoped.titles.len(), 2);
    let one = crate::load_scoped(scoped.title_text(1).expect("text"), &root, &l.sha256)
        .expect("scoped title loads");
    assert_eq!(one.spec.titles[0], *nd);
    // Deterministic: the same folders give the same text.
    let again = load(
        &root,
        &format!("{HEAD}[catalog]\nfolders = [\"incoming/*\"]\n"),
    )
    .expect("loads");
    assert_eq!(again.text, l.text);
}

#[test]
fn every_unplaceable_file_is_a_finding_at_once() {
    let root = tree(
        "findings",
        &[
            "in/A/Kick.wav",
            "in/A/Track 7.wav",
            "in/A/Mix v1.wav",
            "in/A/Print v2.wav",
            "in/A/Drum Mix.wav",
            "in/A/notes.txt",
            "in/Empty/",
            "in/OnlyText/lyrics.pdf",
            "more/A/Bass.wav",
        ],
    );
    let errs = errors(load(
        &root,
        &format!("{HEAD}[catalog]\nfolders = [\"in/*\", \"in/O*\", \"more/*\", \"nowhere/*\"]\n"),
    ));
    has(
        &errs,
        &[
            "'in/A/Track 7.wav'",
            "no role",
            "[catalog.titles.\"A\"] roles = { \"Track 7.wav\" = \"keys\" }",
        ],
    );
    has(
        &errs,
        &[
            "'in/A'",
            "2 files are named like a reference mix",
            "\"Mix v1.wav\", \"Print v2.wav\"",
            "reference = \"Mix v1.wav\"",
        ],
    );
    has(
        &errs,
        &[
            "'in/A/Drum Mix.wav'",
            "both a `drums` stem and a reference mix",
        ],
    );
    has(
        &errs,
        &[
            "'in/A/notes.txt'",
            "not an audio file",
            "exclude = [\"notes.txt\"]",
        ],
    );
    has(&errs, &["'in/Empty'", "holds no audio files"]);
    has(&errs, &["'in/OnlyText/lyrics.pdf'", "not an audio file"]);
    has(&errs, &["'in/OnlyText'", "holds no audio files"]);
    has(
        &errs,
        &[
            "title name `A` is used twice",
            "folder 'in/A'",
            "folder 'more/A'",
        ],
    );
    has(&errs, &["folder 'in/OnlyText' is taken twice"]);
    has(
        &errs,
        &["catalog.folders[3]", "`nowhere/*` matches no folder"],
    );
}

#[test]
fn overrides_settle_what_names_cannot() {
    let root = tree(
        "overrides",
        &[
            "in/Night Drive/07_Perc.wav",
            "in/Night Drive/Track 7.wav",
            "in/Night Drive/NightDrive_print_v1.wav",
            "in/Night Drive/NightDrive_print_v2.wav",
            "in/Night Drive/old_take.wav",
            "in/Night Drive/Vox Master.wav",
        ],
    );
    let spec = format!(
        "{HEAD}[catalog]\nfolders = [\"in/*\"]\n\
         [catalog.titles.\"Night Drive\"]\n\
         roles = {{ \"Track 7.wav\" = \"guitars\", \"Vox Master.wav\" = \"vocals\" }}\n\
         reference = \"NightDrive_print_v2.wav\"\n\
         exclude = [\"old_take.wav\", \"NightDrive_print_v1.wav\"]\n\
         layout = \"5.1\"\n\
         variants = [\"full\", \"instrumental\"]\n"
    );
    let l = load(&root, &spec).expect("loads");
    let t = &l.spec.titles[0];
    assert_eq!(
        roles(&l.spec, "Night Drive"),
        [
            ("07_Perc.wav".to_string(), Role::Drums),
            ("Track 7.wav".into(), Role::Guitars),
            ("Vox Master.wav".into(), Role::Vocals),
        ]
    );
    assert_eq!(
        t.reference.as_deref(),
        Some("in/Night Drive/NightDrive_print_v2.wav")
    );
    assert_eq!(t.layout, Layout::Surround51);
    assert_eq!(
        t.variants.as_deref(),
        Some(&["full".to_string(), "instrumental".into()][..])
    );
    let all = crate::variant::variants(&l.spec);
    let kept: Vec<&str> = crate::plan::title_variants(&l.spec, t, &all)
        .keep
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(kept, ["full", "instrumental"]);

    // Misspelt keys, names and values are errors with the likely fix.
    let errs = errors(load(
        &root,
        &format!(
            "{HEAD}[catalog]\nfolders = [\"in/*\"]\n[catalog.titles.\"Night Drive\"]\nrefrence = \"x.wav\"\n"
        ),
    ));
    has(
        &errs,
        &["unknown key `refrence`", "did you mean `reference`?"],
    );
    let errs = errors(load(
        &root,
        &format!("{HEAD}[catalog]\nfolder = [\"in/*\"]\n"),
    ));
    has(&errs, &["unknown key `folder`", "did you mean `folders`?"]);
    let errs = errors(load(
        &root,
        &format!(
            "{HEAD}[catalog]\nfolders = [\"in/*\"]\n[catalog.titles.\"Night Driv\"]\nlayout = \"5.1\"\n\
             [catalog.titles.\"Night Drive\"]\nroles = {{ \"Trak 7.wav\" = \"keys\" }}\nvariants = [\"instrumentl\"]\n"
        ),
    ));
    has(
        &errs,
        &[
            "catalog.titles.\"Night Driv\"",
            "did you mean \"Night Drive\"?",
        ],
    );
    has(
        &errs,
        &[
            "`roles` names \"Trak 7.wav\"",
            "did you mean \"Track 7.wav\"?",
        ],
    );
    let errs = errors(load(
        &root,
        &format!(
            "{HEAD}[catalog]\nfolders = [\"in/*\"]\n[catalog.titles.\"Night Drive\"]\n\
             roles = {{ \"Track 7.wav\" = \"keys\", \"Vox Master.wav\" = \"vocals\" }}\n\
             reference = \"NightDrive_print_v2.wav\"\nexclude = [\"old_take.wav\", \"NightDrive_print_v1.wav\"]\n\
             variants = [\"instrumentl\"]\n"
        ),
    ));
    has(
        &errs,
        &[
            "titles[0].variants[0]",
            "`instrumentl` is not a variant",
            "did you mean `instrumental`?",
        ],
    );
    let errs = errors(load(
        &root,
        &format!(
            "{HEAD}[catalog]\nfolders = [\"in/*\"]\n[catalog.titles.\"Night Drive\"]\nroles = {{ \"Track 7.wav\" = \"guitar\" }}\n"
        ),
    ));
    has(
        &errs,
        &["unknown value `guitar`", "did you mean `guitars`?"],
    );
}

#[test]
fn skip_leaves_out_bad_titles_and_says_so() {
    let root = tree(
        "skip",
        &[
            "in/Good/Drums.wav",
            "in/Good/Bass.wav",
            "in/Bad/Track 1.wav",
            "in/Bad/Bass.wav",
        ],
    );
    let l = load(
        &root,
        &format!("{HEAD}[catalog]\nfolders = [\"in/*\"]\non_error = \"skip\"\n"),
    )
    .expect("loads");
    assert_eq!(l.spec.titles.len(), 1);
    assert_eq!(l.spec.titles[0].name, "Good");
    assert_eq!(l.skipped.len(), 1);
    assert!(
        l.skipped[0].to_string().contains("'in/Bad/Track 1.wav'"),
        "{:?}",
        l.skipped
    );
    assert!(l.text.starts_with("# titles left out"), "{}", l.text);
    // Without `skip`, the same folder stops the load.
    has(
        &errors(load(
            &root,
            &format!("{HEAD}[catalog]\nfolders = [\"in/*\"]\n"),
        )),
        &["'in/Bad/Track 1.wav'", "no role"],
    );
}

#[test]
fn titles_written_by_hand_come_first_and_keep_their_names() {
    let root = tree("mixed", &["in/B/Drums.wav", "in/A/Bass.wav", "x/Keys.wav"]);
    let spec = format!(
        "{HEAD}[catalog]\nfolders = [\"in/*\"]\n\n[[titles]]\nname = \"Hand\"\nstems = [{{ file = \"x/Keys.wav\", role = \"keys\" }}]\n"
    );
    let l = load(&root, &spec).expect("loads");
    let names: Vec<&str> = l.spec.titles.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Hand", "A", "B"]);
    let spec = format!(
        "{HEAD}[catalog]\nfolders = [\"in/*\"]\n\n[[titles]]\nname = \"A\"\nstems = [{{ file = \"x/Keys.wav\", role = \"keys\" }}]\n"
    );
    has(
        &errors(load(&root, &spec)),
        &["title name `A` is used twice", "a [[titles]] table"],
    );
}

#[test]
fn a_catalog_in_text_that_was_not_expanded_is_refused() {
    let e = crate::parse_and_validate(&format!("{HEAD}[catalog]\nfolders = [\"in/*\"]\n"), None)
        .expect_err("refused");
    assert!(
        e.to_string()
            .contains("is expanded when the spec is read from its file"),
        "{e}"
    );
}

const CSV_HEAD: &str = "title,folder,files,roles,reference,variants,profile\n";

#[test]
fn an_index_lists_titles_by_folder_or_by_files() {
    let root = tree(
        "index",
        &[
            "stems/Night Drive/Kick.wav",
            "stems/Night Drive/Perc 07.wav",
            "stems/Night Drive/Song_MIX.wav",
            "stems/loose/Song, The - Keys.wav",
            "stems/loose/Song, The - Vox.wav",
            "stems/loose/Take 3.wav",
        ],
    );
    // A BOM, quoted fields holding commas, spaces around a cell, a blank line.
    let csv = format!(
        "\u{feff}{CSV_HEAD}\
         ,Night Drive,,,,full;instrumental,ebu-r128\n\
         \n\
         \"Song, The\",,\"loose/Song, The - Keys.wav;loose/Song, The - Vox.wav;loose/Take 3.wav\", loose/Take 3.wav=guitars,,,\n"
    );
    write(&root.join("stems"), "catalog.csv", &csv);
    let l = load(
        &root,
        &format!("{HEAD}[catalog]\nindex = \"stems/catalog.csv\"\n"),
    )
    .expect("loads");
    let names: Vec<&str> = l.spec.titles.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Night Drive", "Song, The"]);
    let nd = &l.spec.titles[0];
    assert_eq!(
        nd.reference.as_deref(),
        Some("stems/Night Drive/Song_MIX.wav")
    );
    assert_eq!(
        nd.variants.as_deref(),
        Some(&["full".to_string(), "instrumental".into()][..])
    );
    assert_eq!(
        roles(&l.spec, "Night Drive"),
        [
            ("Kick.wav".to_string(), Role::Drums),
            ("Perc 07.wav".into(), Role::Drums)
        ]
    );
    let song = &l.spec.titles[1];
    assert_eq!(song.stems[0].file, "stems/loose/Song, The - Keys.wav");
    assert_eq!(
        roles(&l.spec, "Song, The"),
        [
            ("Song, The - Keys.wav".to_string(), Role::Keys),
            ("Song, The - Vox.wav".into(), Role::Vocals),
            ("Take 3.wav".into(), Role::Guitars),
        ]
    );
}

#[test]
fn index_errors_name_the_line_the_column_and_the_fix() {
    let root = tree(
        "index-errors",
        &["A/Kick.wav", "B/Bass.wav", "C/Track 9.wav"],
    );
    let spec =
        format!("{HEAD}[delivery]\nprofile = \"ebu-r128\"\n[catalog]\nindex = \"catalog.csv\"\n");
    let csv = format!(
        "{CSV_HEAD}\
         ,A,,Kick.wav=drum,,,\n\
         ,B,,,,,netflix\n\
         ,C,,Track 9.wav,,,\n\
         ,B,too,many,fields,,,,\n\
         ,,,,,,\n\
         ,A2,,,,,\n"
    );
    write(&root, "catalog.csv", &csv);
    let errs = errors(load(&root, &spec));
    has(
        &errs,
        &[
            "catalog.csv line 2",
            "column `roles`",
            "`drum` (for `Kick.wav`) is not a role",
            "did you mean `drums`?",
        ],
    );
    has(
        &errs,
        &[
            "catalog.csv line 3",
            "column `profile`",
            "`netflix` differs from the job's delivery profile `ebu-r128`",
            "split the index by profile",
        ],
    );
    has(
        &errs,
        &[
            "catalog.csv line 4",
            "column `roles`",
            "`Track 9.wav` has no role",
            "Track 9.wav=drums",
        ],
    );
    has(
        &errs,
        &[
            "catalog.csv line 5",
            "9 fields where the header has 7",
            "quote a field",
        ],
    );
    has(
        &errs,
        &["catalog.csv line 7", "cannot list the folder 'A2'"],
    );
    // A row with every cell empty is a blank line, not an error.
    assert!(!errs.iter().any(|e| e.contains("line 6")), "{errs:?}");

    write(&root, "catalog.csv", "title,foldr,roles\nA,A,\n");
    let errs = errors(load(&root, &spec));
    has(
        &errs,
        &[
            "catalog.csv line 1",
            "unknown column `foldr` (column 2)",
            "did you mean `folder`?",
        ],
    );
    has(&errs, &["neither a `folder` nor a `files` column"]);

    write(&root, "catalog.csv", "title,folder\n,A\n,C\n");
    has(
        &errors(load(&root, &spec)),
        &[
            "catalog.csv line 3",
            "'C/Track 9.wav'",
            "no role",
            "set `roles` to `Track 9.wav=keys` on catalog.csv line 3",
        ],
    );
    std::fs::remove_file(root.join("catalog.csv")).expect("rm");
    has(
        &errors(load(&root, &spec)),
        &["catalog.index", "cannot read"],
    );
}

#[test]
fn a_folder_in_the_index_and_the_glob_is_taken_twice() {
    let root = tree("both", &["in/A/Kick.wav"]);
    write(&root, "catalog.csv", "title,folder\nOther,in/A\n");
    let errs = errors(load(
        &root,
        &format!("{HEAD}[catalog]\nfolders = [\"in/*\"]\nindex = \"catalog.csv\"\n"),
    ));
    has(
        &errs,
        &["catalog.csv line 2", "folder 'in/A' is taken twice"],
    );
}

#[test]
fn a_thousand_folders_expand_in_order_in_one_pass() {
    let root = tree("thousand", &[]);
    let n = 1000;
    for i in 0..n {
        let d = root.join(format!("in/Cue {i:04}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        for f in [
            "01_Kick.wav",
            "02_Bass.wav",
            "Keys.wav",
            "LeadVox.wav",
            "Mix.wav",
        ] {
            std::fs::write(d.join(f), b"").expect("write");
        }
    }
    let started = std::time::Instant::now();
    let l = load(&root, &format!("{HEAD}[catalog]\nfolders = [\"in/*\"]\n")).expect("loads");
    let took = started.elapsed();
    assert_eq!(l.spec.titles.len(), n);
    assert!(l.spec.titles.windows(2).all(|w| w[0].name < w[1].name));
    assert!(
        l.spec
            .titles
            .iter()
            .all(|t| t.stems.len() == 4 && t.reference.is_some())
    );
    eprintln!("{n} folders of 5 files expanded, parsed and validated in {took:?}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_catalog_whose_every_title_is_skipped_is_an_error() {
    let root = tree("all-skipped", &["in/Bad/Track 1.wav"]);
    let errs = errors(load(
        &root,
        &format!("{HEAD}[catalog]\nfolders = [\"in/*\"]\non_error = \"skip\"\n"),
    ));
    has(&errs, &["gives no title"]);
    has(&errs, &["'in/Bad/Track 1.wav'", "no role"]);
}

#[test]
fn absolute_globs_and_the_spec_folder_itself() {
    let root = tree(
        "absolute",
        &["in/A/Drums.wav", "in/B/Bass.wav", "in/out/Night_full.wav"],
    );
    // A spec inside the output folder, taking `in/*` by absolute path and
    // leaving its own folder out.
    let out = root.join("in/out");
    let abs = root.join("in").display().to_string();
    let spec = format!("{HEAD}[catalog]\nfolders = [\"{abs}/*\"]\nexclude = [\"{abs}/out\"]\n");
    let l = crate::load_file(&write(&out, "spec.toml", &spec)).expect("loads");
    let names: Vec<&str> = l.spec.titles.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
    assert_eq!(l.spec.titles[0].stems[0].file, format!("{abs}/A/Drums.wav"));
    // `.` is the spec's own folder, named as on disk.
    let a = root.join("in/A");
    let l = crate::load_file(&write(
        &a,
        "spec.toml",
        &format!(
            "{HEAD}[catalog]\nfolders = [\".\"]\n[catalog.titles.A]\nexclude = [\"spec.toml\"]\n"
        ),
    ))
    .expect("loads");
    assert_eq!(l.spec.titles[0].name, "A");
    assert_eq!(l.spec.titles[0].stems[0].file, "Drums.wav");
}
