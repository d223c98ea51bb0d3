"""CPU facts for training decisions and model cards, read from /proc/cpuinfo text."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from conjure.training import cpu

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "conjure-tiny.yaml")
AMX = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n"
AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx2 fma\n"


def test_native_bf16_and_the_name_come_from_the_flags():
    assert cpu.native_bf16(AMX) is True and cpu.native_bf16(AVX2) is False
    assert cpu.cpu_name(AMX) == "Intel(R) Xeon(R) Processor (amx_bf16, avx512_bf16)"
    assert cpu.cpu_name(AVX2) == "AMD EPYC 7B13"
    assert cpu.native_bf16("") is None


def test_train_warns_about_emulated_bf16_only_where_it_is_emulated(monkeypatch):
    from conjure.cli import app
    runner = CliRunner()
    for info, warned in ((AVX2, True), (AMX, False)):
        monkeypatch.setattr(cpu, "_cpuinfo", lambda info=info: info)
        r = runner.invoke(app, ["train", RECIPE, "--dry-run"])
        assert r.exit_code == 0
        assert ("bf16 autocast is emulated" in r.output) is warned
        r = runner.invoke(app, ["train", RECIPE, "--dry-run", "--precision", "no"])
        assert "emulated" not in r.output
