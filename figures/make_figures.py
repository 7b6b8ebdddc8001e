"""Regenerate every figure of the project: ``warptheory figures`` or ``python figures/make_figures.py``.

Each ``figures/fig_*.py`` module contributes functions ``figure_<name>(outdir, ...)`` that
write PNGs into ``outdir`` and return their paths.  A function that needs the validation
report (``report_json_path``) reads ``validation-report/report.json`` and is skipped, with a
message, when that report has not been produced yet (``pytest validation`` writes it).
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_REPORT = HERE.parent / "validation-report" / "report.json"


def figure_functions():
    for path in sorted(HERE.glob("fig_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("figure_") and fn.__module__ == path.stem:
                yield name, fn


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=HERE)
    parser.add_argument("--only", nargs="+", default=None, help="names of figure functions to run")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="validation report.json")
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    written, skipped = [], []
    for name, fn in figure_functions():
        if args.only and name not in args.only:
            continue
        params = inspect.signature(fn).parameters
        kwargs = {}
        if "report_json_path" in params:
            if not args.report.exists():
                skipped.append(f"{name} (no {args.report}; run `pytest validation` first)")
                continue
            kwargs["report_json_path"] = args.report
        paths = fn(outdir=args.outdir, **kwargs)
        written.extend(paths)
        print(f"{name}: " + ", ".join(str(p) for p in paths))
    for s in skipped:
        print(f"skipped {s}")
    print(f"{len(written)} figure file(s) written to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
