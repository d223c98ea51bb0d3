"""The Piper voice process: run as a script, never imported by conjure.

Piper (`piper-tts`) is GPL-3.0, so conjure never imports it: this script is the only code that does, and it
runs in its own process, which `conjure.pipelines.speech.PiperProcess` keeps warm. Piper's own CLI cannot
serve here: `--output-raw` streams one line's audio after another with nothing to mark where one ends.

Usage: `python -I piper_runner.py MODEL.onnx [THREADS]`. THREADS is onnxruntime's intra-op thread count
(0 = its default, all cores); its threads never spin-wait, which on a CPU shared with other work burns
time the voice needs (interleaved runs here: first clause 429 ms median spinning, 317 ms not, 245 ms with
one thread and no spinning).

Protocol (one request at a time). Requests are JSON lines on stdin:
    {"text": "...", "length_scale": 1.0}
Replies are frames on stdout, each a 1-byte kind, a 4-byte little-endian length and the payload:
    b"H" once at start: JSON {"sample_rate": ..., "length_scale": ...}
    b"A" mono 16-bit little-endian PCM (one per sentence piper finds in the text)
    b"E" end of the reply to one request (empty payload)
    b"X" an error message (UTF-8) for that request, followed by b"E"
"""

import json
import struct
import sys


def _frame(out, kind: bytes, payload: bytes = b"") -> None:
    out.write(kind + struct.pack("<I", len(payload)) + payload)


def main() -> None:
    import onnxruntime
    from piper import PiperConfig, PiperVoice, SynthesisConfig   # here only: this process, not conjure's

    model, threads = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with open(f"{model}.json", encoding="utf-8") as f:
        config = PiperConfig.from_dict(json.load(f))
    session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    voice = PiperVoice(session=session, config=config)
    base = voice.config.length_scale
    out = sys.stdout.buffer
    _frame(out, b"H", json.dumps({"sample_rate": voice.config.sample_rate, "length_scale": base}).encode())
    out.flush()
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            config = SynthesisConfig(length_scale=float(req.get("length_scale") or base))
            for chunk in voice.synthesize(str(req["text"]), config):
                _frame(out, b"A", chunk.audio_int16_bytes)
                out.flush()
        except Exception as e:   # report and keep serving: one bad request must not kill the warm voice
            _frame(out, b"X", f"{type(e).__name__}: {e}".encode())
        _frame(out, b"E")
        out.flush()


if __name__ == "__main__":
    main()
