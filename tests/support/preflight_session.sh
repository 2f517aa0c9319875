#!/usr/bin/env bash
# Writes a good six-stem session and its reference mix with independent
# tools (ffmpeg synthesises the stems, sox sums them at unity into the
# reference): DIR/{Drums,Bass,Keys,LeadVox,BGV,FX}.wav and DIR/Mix.wav,
# 24-bit WAV. Used by the preflight tests (which plant faults into copies)
# and to measure preflight speed and memory on long sessions.
#
#   preflight_session.sh DIR SECONDS [RATE]
set -euo pipefail
dir=$1
d=$2
r=${3:-48000}
mkdir -p "$dir"
cd "$dir"
ff() { ffmpeg -nostdin -v error -y "$@"; }
ff -f lavfi -i "aevalsrc='0.4*sin(2*PI*55*t)*exp(-12*mod(t,0.5))+0.15*(random(0)*2-1)*exp(-40*mod(t+0.25,0.5))|0.4*sin(2*PI*55*t)*exp(-12*mod(t,0.5))+0.15*(random(1)*2-1)*exp(-40*mod(t+0.25,0.5))':s=$r:d=$d" -c:a pcm_s24le Drums.wav
ff -f lavfi -i "aevalsrc='(0.3*sin(2*PI*41.2*t)+0.1*sin(2*PI*82.4*t+0.5))*(0.7+0.3*sin(2*PI*0.5*t))':s=$r:d=$d" -ac 2 -c:a pcm_s24le Bass.wav
ff -f lavfi -i "aevalsrc='0.1*(sin(2*PI*261.6*t)+sin(2*PI*329.6*t)+sin(2*PI*392*t))*(0.6+0.4*sin(2*PI*0.25*t))|0.1*(sin(2*PI*261.6*t+1)+sin(2*PI*329.6*t+2)+sin(2*PI*392*t+3))*(0.6+0.4*sin(2*PI*0.25*t))':s=$r:d=$d" -c:a pcm_s24le Keys.wav
ff -f lavfi -i "anoisesrc=c=pink:a=0.5:s=$r:d=$d:seed=7" -af "bandpass=f=1200:w=800,volume=14,volume='0.55+0.45*sin(2*PI*0.7*t)':eval=frame" -ac 2 -c:a pcm_s24le LeadVox.wav
ff -f lavfi -i "anoisesrc=c=white:a=0.3:s=$r:d=$d:seed=9" -af "bandpass=f=2500:w=1500,volume=35,volume='0.5+0.4*sin(2*PI*0.3*t)':eval=frame" -ac 2 -c:a pcm_s24le BGV.wav
ff -f lavfi -i "anoisesrc=c=brown:a=0.3:s=$r:d=$d:seed=3" -af "highpass=f=300,volume=2" -ac 2 -c:a pcm_s24le FX.wav
sox -D -m -v 1 Drums.wav -v 1 Bass.wav -v 1 Keys.wav -v 1 LeadVox.wav -v 1 BGV.wav -v 1 FX.wav -b 24 Mix.wav
