//! Reading a folder of stems as it arrives, with no spec: what role each
//! file plays, judged from its name the way engineers write them
//! (`01_KICK.wav`, `Song - LeadVox.aif`, `BGV 2.flac`, `DX_main.wav`), and
//! which file is the reference mix (`mix`, `ref`, `master`, `print`).
//!
//! Pure string work, so `stemforge check DIR` and tests share one rule set.

use crate::model::Role;

/// Words that name a role, matched against whole words of a file name
/// (case-insensitive; digits, `_`, `-`, `.`, spaces and camel case split
/// words). The first matching rule wins, so specific ones come first.
const ROLE_WORDS: &[(Role, &[&str])] = &[
    // A live rig's click and guide tracks first: `Guide Vox` is a cue for
    // the band, not the vocal stem. `Count-In` joins to `countin`. Not
    // `cue`: film and trailer music is named by cue (`1M3 Cue.wav`), and a
    // guide is muted in every mix.
    (Role::Click, &["click", "clk", "metronome"]),
    (Role::Guide, &["guide", "guides", "countin"]),
    (
        Role::BackingVocals,
        &[
            "bgv",
            "bgvs",
            "bv",
            "bvs",
            "backing",
            "backings",
            "bvox",
            "choir",
            "harmony",
            "harmonies",
            "adlib",
            "adlibs",
        ],
    ),
    (
        Role::Dialogue,
        &[
            "dx",
            "dia",
            "dialog",
            "dialogue",
            "vo",
            "voiceover",
            "narration",
        ],
    ),
    (
        Role::Vocals,
        &[
            "vox", "vocal", "vocals", "voc", "vocs", "leadvox", "lv", "singer",
        ],
    ),
    (
        Role::Drums,
        &[
            "drum",
            "drums",
            "kick",
            "kik",
            "bd",
            "snare",
            "snr",
            "sd",
            "hat",
            "hats",
            "hh",
            "hihat",
            "tom",
            "toms",
            "oh",
            "overhead",
            "overheads",
            "room",
            "perc",
            "percussion",
            "cymbal",
            "cymbals",
            "kit",
            "loop",
            "loops",
        ],
    ),
    (
        Role::Bass,
        &["bass", "bas", "sub", "subbass", "808", "bassline"],
    ),
    (
        Role::Guitars,
        &[
            "gtr", "gtrs", "guitar", "guitars", "acoustic", "elec", "ag", "eg",
        ],
    ),
    (
        Role::Keys,
        &[
            "keys", "key", "kbd", "piano", "pno", "rhodes", "wurli", "organ", "synth", "synths",
            "pad", "pads",
        ],
    ),
    (
        Role::Fx,
        &[
            "fx", "sfx", "efx", "effects", "riser", "risers", "impact", "impacts", "whoosh",
            "foley", "atmos", "ambience",
        ],
    ),
    (
        Role::Music,
        &[
            "music",
            "mx",
            "strings",
            "str",
            "horns",
            "brass",
            "winds",
            "orch",
            "orchestra",
            "score",
            "bed",
        ],
    ),
];

/// Words that name a whole mix on their own: a file named with one and no
/// role word is the reference mix; beside a role word (`Drum Mix`, `Vox
/// Master`) they leave the file ambiguous.
const MIX_WORDS: &[&str] = &[
    "mix",
    "ref",
    "reference",
    "master",
    "mastered",
    "print",
    "fullmix",
    "2mix",
    "twomix",
];

/// Words that mark the reference mix only in a name with no role word:
/// beside one (`Bass Stereo`, `DX Main`) they describe a stem.
const DESCRIPTIVE_WORDS: &[&str] = &["stereo", "full", "main"];

/// What a file name says a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A stem of this role.
    Stem(Role),
    /// The reference (full) mix.
    Reference,
    /// A role word and a word naming a whole mix (`Drum Mix.wav`): either
    /// a stem or a mix, which the name cannot settle.
    Both(Role),
    /// No word names a role or a mix (`Track 7.wav`).
    Unknown,
}

/// One rule set for every reader of a folder of stems (`check DIR`, a
/// catalog's title folders): the role a name suggests, the reference mix,
/// or neither.
pub fn classify(file_name: &str) -> NameKind {
    let w = words(file_name);
    let has = |list: &[&str]| w.iter().any(|x| list.contains(&x.as_str()));
    match infer_role(file_name) {
        Some(role) if has(MIX_WORDS) => NameKind::Both(role),
        Some(role) => NameKind::Stem(role),
        None if has(MIX_WORDS) || has(DESCRIPTIVE_WORDS) => NameKind::Reference,
        None => NameKind::Unknown,
    }
}

/// Splits a file name (without extension) into lowercase words.
pub fn words(file_name: &str) -> Vec<String> {
    let stem = match file_name.rsplit_once('.') {
        Some((s, ext)) if !ext.is_empty() && ext.len() <= 5 && !ext.contains(' ') => s,
        _ => file_name,
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev: Option<char> = None;
    for c in stem.chars() {
        let split = !c.is_alphanumeric()
            || prev.is_some_and(|p| {
                (p.is_lowercase() && c.is_uppercase())
                    || (p.is_alphabetic() && c.is_ascii_digit())
                    || (p.is_ascii_digit() && c.is_alphabetic())
            });
        if split && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
        }
        prev = Some(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The role a file name suggests; `None` when no word names one (the caller
/// reports it and treats the file as `other`).
pub fn infer_role(file_name: &str) -> Option<Role> {
    let w = words(file_name);
    // "808" splits off as digits; "lead vox" / "leadvox" both say vocals.
    let joined = w.join("");
    ROLE_WORDS.iter().find_map(|(role, names)| {
        names
            .iter()
            .any(|n| w.iter().any(|x| x == n) || (n.len() >= 6 && joined.contains(n)))
            .then_some(*role)
    })
}

/// Whether a file name marks the reference mix, not a stem. A name that also
/// names a role (`Drum Mix`, `Vox Master`) is a stem.
pub fn is_reference(file_name: &str) -> bool {
    classify(file_name) == NameKind::Reference
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names_the_way_engineers_write_them() {
        assert_eq!(words("01_KICK_In.wav"), ["01", "kick", "in"]);
        assert_eq!(words("Song - LeadVox 2.aif"), ["song", "lead", "vox", "2"]);
        assert_eq!(words("BGV2.flac"), ["bgv", "2"]);
        assert_eq!(words("no extension"), ["no", "extension"]);
    }

    #[test]
    fn roles_from_file_names() {
        let cases = [
            ("Drums.wav", Some(Role::Drums)),
            ("01_KICK.wav", Some(Role::Drums)),
            ("Night Drive - Snare Top.wav", Some(Role::Drums)),
            ("bass_DI.wav", Some(Role::Bass)),
            ("808.wav", Some(Role::Bass)),
            ("Keys.aif", Some(Role::Keys)),
            ("Rhodes_L.wav", Some(Role::Keys)),
            ("Horns.wav", Some(Role::Music)),
            ("Gtr 1.wav", Some(Role::Guitars)),
            ("Vox.wav", Some(Role::Vocals)),
            ("LeadVox.wav", Some(Role::Vocals)),
            ("Lead Vocal.wav", Some(Role::Vocals)),
            ("BGV.wav", Some(Role::BackingVocals)),
            ("bgvs_02.wav", Some(Role::BackingVocals)),
            ("Backing Vocals.wav", Some(Role::BackingVocals)),
            ("DX.wav", Some(Role::Dialogue)),
            ("Dialogue_Main.wav", Some(Role::Dialogue)),
            ("FX.wav", Some(Role::Fx)),
            ("SFX_whooshes.wav", Some(Role::Fx)),
            ("Lead Synth.wav", Some(Role::Keys)),
            ("Tambourine.wav", None),
            ("Track 7.wav", None),
            ("Click.wav", Some(Role::Click)),
            ("CLK 120bpm.wav", Some(Role::Click)),
            ("Metronome.wav", Some(Role::Click)),
            ("Guide.wav", Some(Role::Guide)),
            // Film music is named by cue: never taken for a live guide.
            ("1M3 Cue.wav", None),
            ("Cues.wav", None),
            ("Count-In.wav", Some(Role::Guide)),
            ("Guide Vox.wav", Some(Role::Guide)),
        ];
        for (name, want) in cases {
            assert_eq!(infer_role(name), want, "{name}");
        }
    }

    #[test]
    fn real_world_names_numbered_spaced_and_mixed_case() {
        let cases = [
            ("01_Kick.wav", NameKind::Stem(Role::Drums)),
            ("02 Snare.wav", NameKind::Stem(Role::Drums)),
            ("03-OH L.wav", NameKind::Stem(Role::Drums)),
            ("Song - Bass DI.aif", NameKind::Stem(Role::Bass)),
            ("LEADVOX.WAV", NameKind::Stem(Role::Vocals)),
            ("leadVox_comp.wav", NameKind::Stem(Role::Vocals)),
            ("BGV.wav", NameKind::Stem(Role::BackingVocals)),
            ("12 bgvs Chorus.flac", NameKind::Stem(Role::BackingVocals)),
            ("DX.wav", NameKind::Stem(Role::Dialogue)),
            ("dx_main.wav", NameKind::Stem(Role::Dialogue)),
            ("Bass Stereo.wav", NameKind::Stem(Role::Bass)),
            ("Song_MIX.wav", NameKind::Reference),
            ("NightDrive_print_v2.wav", NameKind::Reference),
            ("REF.wav", NameKind::Reference),
            ("Song Master 24b.wav", NameKind::Reference),
            ("Drum Mix.wav", NameKind::Both(Role::Drums)),
            ("Vox Master.wav", NameKind::Both(Role::Vocals)),
            ("Track 7.wav", NameKind::Unknown),
            ("Tambourine.wav", NameKind::Unknown),
        ];
        for (name, want) in cases {
            assert_eq!(classify(name), want, "{name}");
        }
    }

    #[test]
    fn reference_mix_names() {
        for name in [
            "Night Drive MIX.wav",
            "ref.wav",
            "Song_Master_24b.wav",
            "print 2.wav",
            "FullMix.wav",
        ] {
            assert!(is_reference(name), "{name}");
        }
        for name in [
            "Drum Mix.wav",
            "Vox Master.wav",
            "Bass.wav",
            "Remix Stem 3.wav",
        ] {
            assert!(!is_reference(name), "{name}");
        }
    }
}
