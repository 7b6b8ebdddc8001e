"""The warptheory command line: output, help on every command, one-line errors with exit status 2."""
import subprocess
import sys

import pytest

import warptheory as wt
from warptheory.cli import main


def test_phi_prints_six_values_per_sigma(capsys):
    assert main(["phi", "tri", "0", "0.3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].split()[1:] == ["phi11", "phi12", "phi21", "dphi11", "dphi12", "dphi21"]
    row = lines[3].split()
    assert float(row[0]) == 0.3 and float(row[3]) == wt.phi("tri", 0.3).phi21
    assert len(lines) == 4


def test_phi_single_order(capsys):
    assert main(["phi", "cos", "0.5", "--order", "2", "1", "--derivative"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert float(out[1].split()[1]) == wt.phi_ab("cos", 0.5, 2, 1, True)


def test_phi_user_expression(capsys):
    assert main(["phi", "expr:Piecewise((1 - Abs(t), Abs(t) <= 1), (0, True))", "0.3"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[3] == f"{wt.phi('tri', 0.3).phi21:.16g}"


def test_kernels_lists_properties(capsys):
    assert main(["kernels"]) == 0
    out = capsys.readouterr().out
    for name in wt.BUILTIN_KERNELS:
        assert name in out
    assert "rect       True             True" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["phi", "bicubic", "1"], "built-in kernels are tri, cos, rect, hann, sqrt_tri"),
        (["phi", "tri", "-1"], "sigma"),
        (["phi", "tri", "nan"], "sigma"),
        (["phi", "tri", "inf"], "sigma"),
        (["phi", "tri", "abc"], "sigma"),
        (["phi", "tri", "0.1", "--order", "0", "1"], "a: expected a positive integer"),
        (["phi", "tri", "0.1", "--derivative"], "--derivative"),
        (["phi", "expr:Piecewise((1 - t**2/2, Abs(t) <= 1), (0, True))", "0.1"], "φ(n) = 0"),
        (["phi"], "required"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_bad_input_one_line_and_exit_2(argv, fragment, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", [[], ["phi"], ["kernels"], ["figures"], ["validate"]])
def test_help_on_every_command(command):
    proc = subprocess.run([sys.executable, "-m", "warptheory.cli", *command, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: warptheory" in proc.stdout
