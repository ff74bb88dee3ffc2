#!/usr/bin/env python3
"""Synthesises examples/graphs/drums.wav: a one-bar kick/snare/hat loop (mono, 16-bit, 48 kHz).

Only the standard library, so anyone can regenerate the file byte for byte.
"""
import math
import random
import struct
import wave

RATE = 48000
BEAT = 0.25  # seconds per beat at 240 bpm eighths
LENGTH = int(RATE * 8 * BEAT)
rng = random.Random(7)
out = [0.0] * LENGTH


def add(start, samples):
    for i, s in enumerate(samples):
        if start + i < LENGTH:
            out[start + i] += s


def kick():
    n = int(0.25 * RATE)
    phase = 0.0
    samples = []
    for i in range(n):
        t = i / RATE
        f = 50 + 100 * math.exp(-t * 30)
        phase += 2 * math.pi * f / RATE
        samples.append(0.9 * math.sin(phase) * math.exp(-t * 12))
    return samples


def snare():
    n = int(0.18 * RATE)
    return [0.5 * (rng.uniform(-1, 1) * 0.7 + 0.3 * math.sin(2 * math.pi * 190 * i / RATE)) * math.exp(-i / RATE * 25) for i in range(n)]


def hat():
    n = int(0.05 * RATE)
    prev = 0.0
    samples = []
    for i in range(n):
        x = rng.uniform(-1, 1)
        samples.append(0.25 * (x - prev) * math.exp(-i / RATE * 80))
        prev = x
    return samples


for step in range(8):
    start = int(step * BEAT * RATE)
    if step in (0, 3, 5):
        add(start, kick())
    if step in (2, 6):
        add(start, snare())
    add(start, hat())

with wave.open("examples/graphs/drums.wav", "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(RATE)
    w.writeframes(b"".join(struct.pack("<h", int(max(-1.0, min(1.0, s)) * 32767)) for s in out))
