"""The ``warptheory`` command line: ``phi``, ``kernels``, ``stability``, ``figures``, ``validate``.

Bad input ends with exit status 2 and one line on stderr naming the argument.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other bad input
        self.exit(2, f"{self.prog}: error: {message}\n")


def _kernel_arg(text: str):
    from .kernels import get_kernel, kernel_from_sympy

    if text.startswith("expr:"):
        return kernel_from_sympy(text[len("expr:"):], name=text[len("expr:"):])
    return get_kernel(text)


def _sigma_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"sigma: expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"sigma: expected a finite value ≥ 0, got {text!r}")
    return value


def _fmt(value: float) -> str:
    return f"{value:.16g}"


def cmd_phi(args) -> int:
    from .phifunctions import phi, phi_ab

    kernel = _kernel_arg(args.kernel)
    sigmas = [_sigma_arg(s) for s in args.sigma]
    if args.order:
        a, b = args.order
        values = [phi_ab(kernel, s, a, b, args.derivative) for s in sigmas]  # validate before printing
        label = f"{'dphi' if args.derivative else 'phi'}{a}{b}"
        print(f"{'sigma':>12}  {label:>22}")
        for s, v in zip(sigmas, values):
            print(f"{_fmt(s):>12}  {_fmt(v):>22}")
        return 0
    fields = ("phi11", "phi12", "phi21", "dphi11", "dphi12", "dphi21")
    records = [phi(kernel, s) for s in sigmas]
    print(f"# kernel {kernel.name}: Φ_{{a,b}}(σ) and Φ'_{{a,b}}(σ) of eq 6")
    print(f"{'sigma':>12}  " + "  ".join(f"{f:>22}" for f in fields))
    for s, record in zip(sigmas, records):
        print(f"{_fmt(s):>12}  " + "  ".join(f"{_fmt(getattr(record, f)):>22}" for f in fields))
    return 0


def cmd_kernels(args) -> int:
    from .kernels import BUILTIN_KERNELS, get_kernel

    print(f"{'kernel':<10} {'mean-preserving':<16} {'variance-preserving':<20} description")
    for name in BUILTIN_KERNELS:
        k = get_kernel(name)
        print(f"{name:<10} {str(k.mean_preserving):<16} {str(k.variance_preserving):<20} {k.description}")
    return 0


def cmd_stability(args) -> int:
    from .stability import selfwarp_gain

    kernel = _kernel_arg(args.kernel)
    try:
        sigma = float(args.sigma_eps)
    except ValueError:
        raise ValueError(f"sigma_eps: expected a number, got {args.sigma_eps!r}") from None
    gains = {form: selfwarp_gain(kernel, sigma, d=args.d, channels=args.channels, k=args.k, detach=args.detach,
                                 pre_eps_norm=args.pre_eps_norm, form=form) for form in ("exact", "paper")}
    print(f"# SelfWarp block at initialisation (§3.1): kernel {kernel.name}, σ_ε = {_fmt(sigma)}, d = {args.d}, "
          f"N = {args.channels}, k = {args.k}, detach = {args.detach}, pre-ε norm = {args.pre_eps_norm}")
    print(f"{'gain':<16}  {'exact':>22}  {'paper (eqs 5,7,8)':>22}")
    for field in ("forward", "backward", "backward_direct", "backward_cross", "backward_eps", "ratio"):
        print(f"{field:<16}  " + "  ".join(f"{_fmt(getattr(gains[f], field)):>22}" for f in ("exact", "paper")))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _script(path: Path, what: str) -> Path:
    if not path.exists():
        raise ValueError(f"{what}: {path} not found; run from a source checkout of warptheory")
    return path


def cmd_figures(args) -> int:
    import runpy

    script = _script(REPO_ROOT / "figures" / "make_figures.py", "figures")
    argv = [str(script), "--outdir", str(args.outdir)] + (["--only", *args.only] if args.only else [])
    old = sys.argv
    try:
        sys.argv = argv
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = old
    return 0


def cmd_validate(args) -> int:
    from .montecarlo import run_validation

    _script(REPO_ROOT / "validation", "validate")
    return run_validation(report_dir=str(args.report_dir), thorough=args.thorough, extra_args=("-q",))


def cmd_experiment(args) -> int:
    from .experiments.experiment import run_experiment

    results = run_experiment(args.name, quick=args.quick, seeds=args.seeds, data=args.data, out=args.out,
                             executor=args.executor, progress=not args.no_progress)
    print(f"{args.out / 'report.md'}: {results['experiment']} ({results['budget']} budget, "
          f"{results['seeds']} seed(s)/row) in {results['elapsed_s']:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="warptheory",
        description="Theory verification for dynamic-sampling (warping) networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("phi", help="Φ_{a,b}(σ) and Φ'_{a,b}(σ) of eq 6 for a kernel",
                       description="Print Φ11 Φ12 Φ21 Φ'11 Φ'12 Φ'21 (eq 6) for each σ. KERNEL is a built-in "
                                   "name (see `warptheory kernels`) or expr:<sympy expression in t>.")
    p.add_argument("kernel", metavar="KERNEL")
    p.add_argument("sigma", metavar="SIGMA", nargs="+", help="offset standard deviations σ ≥ 0")
    p.add_argument("--order", nargs=2, type=int, metavar=("A", "B"), help="print only Φ_{A,B}")
    p.add_argument("--derivative", action="store_true", help="with --order: Φ' instead of Φ")
    p.set_defaults(func=cmd_phi)

    p = sub.add_parser("kernels", help="list the built-in kernels and their properties",
                       description="List the built-in interpolation kernels (supplementary §8–9).")
    p.set_defaults(func=cmd_kernels)

    p = sub.add_parser("stability", help="forward and backward gains of a SelfWarp block (§3.1)",
                       description="Print the forward gain σ_y²/σ_x², the backward gain σ_∂x²/σ_∂y² and its "
                                   "parts "
                                   "(direct K^T path, cross term, ε path) of one SelfWarp block at "
                                   "initialisation, exact and as eqs 5, 7, 8 read with ε independent of x "
                                   "(paper_notes/s03_1_stability.md).")
    p.add_argument("kernel", metavar="KERNEL", help="built-in name or expr:<sympy expression in t>")
    p.add_argument("sigma_eps", metavar="SIGMA_EPS", help="rms of each offset component, ≥ 0")
    p.add_argument("--channels", type=_positive_int, required=True, metavar="N", help="channels read by the ε-conv")
    p.add_argument("--k", type=_positive_int, default=3, help="odd side of the ε-convolution window (default 3)")
    p.add_argument("--d", type=_positive_int, default=2, help="warped dimensions, 1 to 3 (default 2)")
    p.add_argument("--detach", action="store_true", help="no gradient from ε into x")
    p.add_argument("--pre-eps-norm", action="store_true", help="batch norm between x and the ε-convolution")
    p.set_defaults(func=cmd_stability)

    p = sub.add_parser("figures", help="regenerate every figure into figures/",
                       description="Run figures/make_figures.py: every figure of the project.")
    p.add_argument("--outdir", type=Path, default=REPO_ROOT / "figures", help="output folder (default figures/)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these figure functions")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("validate", help="run the theory-vs-Monte-Carlo suite (pytest validation)",
                       description="Run `pytest validation` and write report.md/report.json.")
    p.add_argument("--report-dir", type=Path, default=Path("validation-report"))
    p.add_argument("--thorough", action="store_true", help="100× the Monte-Carlo samples")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("experiment", help="§5 training experiments: Tables 1–2, skip ablation, Figures 2–4",
                       description="Train the paper's §5 rows on a proxy under one fixed protocol "
                                   "(paper_notes/s05_results.md); write report.md, results.json and figures "
                                   "into OUT. Resumable: finished seeds in OUT/runs are skipped.")
    p.add_argument("name", metavar="NAME", choices=("table1", "table2", "skip", "bifurcation", "landscape"),
                   help="table1, table2, skip, bifurcation or landscape")
    p.add_argument("--quick", action="store_true", help="smoke-test budget (under 2 minutes)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per row (≥ 1; default 3, 2 with --quick)")
    p.add_argument("--data", type=Path, default=None,
                   help="directory with the CIFAR-10 python batches (default: generated shapes10)")
    p.add_argument("--out", type=Path, default=Path("experiment-out"), help="output folder")
    p.add_argument("--executor", default=None, metavar="ADDRESS",
                   help="serial (default), threads:N, processes:N, or a Dask scheduler address")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_experiment)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "derivative", False) and not getattr(args, "order", None):
        parser.exit(2, "warptheory phi: error: --derivative: needs --order A B\n")
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"warptheory {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
