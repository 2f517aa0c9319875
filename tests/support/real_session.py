#!/usr/bin/env python3
"""Writes a stem session from real instruments, with independent tools.

A public General MIDI file (Debian's planetblupi-music-midi) is split by
channel into instrument groups (mido), each group is rendered by fluidsynth
through the FluidR3 General MIDI soundfont, and a spoken voice is made by
espeak-ng; sox trims, converts and sums them into the reference mix.

    real_session.py DIR [--seconds S] [--midi FILE] [--voice-role ROLE]
                       [--cancel] [--rate R] [--time-reference SAMPLES]

DIR gets Drums.wav, Bass.wav, Keys.wav, Horns.wav, Voice.wav (and with
--cancel a Sub.wav: the bass, polarity-inverted, 1.5 ms late and low-passed,
a layer that partly cancels it as a second bass mic does), Mix.wav (the
stems summed at unity, 32-bit float) and deliverables.toml: a realistic
chain (EQ and compression per stem, a music bus with glue, master
compressor -> loudness -> true-peak limiter). The voice is the stem with
role --voice-role (default `vocals`; `dialogue` for a cue with dialogue).
With --time-reference every stem is a BWF file (ffmpeg writes the `bext`
chunk) placed at that sample of the session timeline.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import mido

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
DEFAULT_MIDI = "/usr/share/planetblupi/music/music000.mid"

# music000.mid: 0 vibraphone, 1 honky-tonk piano, 2 synth bass, 3 tenor sax,
# 4 brass section, 5 pad, 6 organ, 9 drums.
GROUPS = {
    "Drums": {9},
    "Bass": {2},
    "Keys": {0, 1, 5, 6},
    "Horns": {3, 4},
}

LINES = [
    "Night falls over the city, and the lights come on one by one.",
    "Nobody saw him leave. Nobody asked where he was going.",
    "Take the long road home tonight. The river will wait.",
    "Listen. Can you hear it? That is the sound of the last train.",
    "Keep your voice down. They are right behind us.",
]


def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def split(src, channels, seconds, dst):
    """The events of `channels` (and every meta event) up to `seconds`."""
    mid = mido.MidiFile(src)
    out = mido.MidiFile(type=1, ticks_per_beat=mid.ticks_per_beat)
    # Absolute time in seconds needs the tempo map: merge, then cut.
    track = mido.MidiTrack()
    elapsed = 0.0
    pending = 0
    tempo = 500000
    for msg in mido.merge_tracks(mid.tracks):
        pending += msg.time
        if msg.time:
            elapsed += mido.tick2second(msg.time, mid.ticks_per_beat, tempo)
        if msg.type == "set_tempo":
            tempo = msg.tempo
        if elapsed > seconds:
            break
        keep = msg.is_meta or (hasattr(msg, "channel") and msg.channel in channels)
        if keep and msg.type != "end_of_track":
            track.append(msg.copy(time=pending))
            pending = 0
    # Release every note at the cut.
    for ch in channels:
        track.append(mido.Message("control_change", channel=ch, control=123, value=0, time=pending))
        pending = 0
    track.append(mido.MetaMessage("end_of_track", time=0))
    out.tracks.append(track)
    out.save(dst)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--midi", default=DEFAULT_MIDI)
    ap.add_argument("--voice-role", default="vocals")
    ap.add_argument("--cancel", action="store_true")
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--time-reference", type=int, default=None)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    rate = str(a.rate)
    secs = f"{a.seconds:.3f}"
    stems = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, chans in GROUPS.items():
            mid = os.path.join(tmp, name + ".mid")
            raw = os.path.join(tmp, name + ".raw.wav")
            split(a.midi, chans, a.seconds, mid)
            run("fluidsynth", "-ni", "-q", "-g", "0.3", "-r", rate, "-F", raw, SOUNDFONT, mid)
            dst = os.path.join(a.dir, name + ".wav")
            # Exact length: trim or pad with silence.
            run("sox", "-D", raw, "-b", "24", dst, "trim", "0", secs, "pad", "0", secs, "trim", "0", secs)
            stems.append(name)
        # Spoken lines, spread over the programme, peaky and dry.
        pieces = []
        gap = a.seconds / (len(LINES) + 1)
        for i, line in enumerate(LINES):
            w = os.path.join(tmp, f"line{i}.wav")
            run("espeak-ng", "-v", "en-us", "-s", "150", "-a", "180", "-w", w, line)
            p = os.path.join(tmp, f"line{i}.s.wav")
            run("sox", "-D", w, "-r", rate, "-c", "2", "-b", "24", p, "rate", "-v", rate, "pad", f"{gap * (i + 0.5):.3f}")
            pieces.append(p)
        mixv = os.path.join(tmp, "voice.raw.wav")
        run("sox", "-D", "-m", *pieces, "-b", "24", mixv)
        run("sox", "-D", mixv, "-b", "24", os.path.join(a.dir, "Voice.wav"), "gain", "6",
            "trim", "0", secs, "pad", "0", secs, "trim", "0", secs)
        stems.append("Voice")
        if a.cancel:
            run("sox", "-D", os.path.join(a.dir, "Bass.wav"), "-b", "24", os.path.join(a.dir, "Sub.wav"),
                "vol", "-0.8", "lowpass", "180", "delay", "0.0015", "0.0015",
                "trim", "0", secs, "pad", "0", secs, "trim", "0", secs)
            stems.append("Sub")
    files = [os.path.join(a.dir, s + ".wav") for s in stems]
    if a.time_reference is not None:
        for f in files:
            tmpf = f + ".bwf.wav"
            run("ffmpeg", "-nostdin", "-v", "error", "-y", "-i", f, "-c:a", "pcm_s24le",
                "-write_bext", "1", "-metadata", f"time_reference={a.time_reference}", tmpf)
            os.replace(tmpf, f)
    mix_args = []
    for f in files:
        mix_args += ["-v", "1", f]
    run("sox", "-D", "-m", *mix_args, "-e", "floating-point", "-b", "32", os.path.join(a.dir, "Mix.wav"))
    roles = {"Drums": "drums", "Bass": "bass", "Keys": "keys", "Horns": "other",
             "Voice": a.voice_role, "Sub": "fx"}
    with open(os.path.join(a.dir, "deliverables.toml"), "w") as f:
        f.write(SPEC.replace("{voice}", a.voice_role))
        for s in stems:
            f.write(f'\n[[titles.stems]]\nfile = "{s}.wav"\nrole = "{roles[s]}"\n')
    print(a.dir)


SPEC = """schema_version = 1

[delivery]
profile = "ebu-r128"

[graph.roles.drums]
chain = [{ node = "high_pass", freq_hz = 30.0 }, { node = "compressor", threshold_db = -18.0, ratio = 3.0, attack_ms = 5.0, release_ms = 120.0 }]
[graph.roles.bass]
chain = [{ node = "high_pass", freq_hz = 35.0 }, { node = "compressor", threshold_db = -20.0, ratio = 4.0 }]
[graph.roles.keys]
chain = [{ node = "peak", freq_hz = 400.0, gain_db = -2.0, q = 1.0 }, { node = "high_shelf", freq_hz = 8000.0, gain_db = 1.5 }]
[graph.roles.other]
chain = [{ node = "high_pass", freq_hz = 120.0 }, { node = "compressor", threshold_db = -16.0, ratio = 2.5 }]
[graph.roles.{voice}]
chain = [{ node = "high_pass", freq_hz = 90.0 }, { node = "peak", freq_hz = 3000.0, gain_db = 2.0, q = 0.8 }, { node = "compressor", threshold_db = -22.0, ratio = 3.0, attack_ms = 3.0, release_ms = 100.0 }]

[graph.buses.music]
roles = ["drums", "bass", "keys", "other", "fx"]
chain = [{ node = "compressor", threshold_db = -14.0, ratio = 2.0, attack_ms = 30.0, release_ms = 200.0 }]

[graph.master]
chain = [{ node = "compressor", threshold_db = -12.0, ratio = 1.5, attack_ms = 20.0, release_ms = 250.0 }, { node = "loudness" }, { node = "limiter" }]

[[titles]]
name = "Last Train"
reference = "Mix.wav"
"""

if __name__ == "__main__":
    sys.exit(main())
