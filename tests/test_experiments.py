"""Tests of warptheory.experiments: data, divergence rule, eq 15 directions, resumable runner, CLI, smoke runs."""
import concurrent.futures
import json
import math
import pickle

import numpy as np
import pytest

from warptheory.cli import main
from warptheory.experiments import data as D
from warptheory.experiments.divergence import DIVERGENCE_THRESHOLD, VarianceLog, first_exceedance
from warptheory.experiments.runner import ResultStore, Task, make_executor, run_tasks

torch = pytest.importorskip("torch")


def _has_nn():
    try:
        import warptheory.nn.resnet  # noqa: F401
    except ImportError:
        return False
    return True


needs_nn = pytest.mark.skipif(not _has_nn(), reason="warptheory.nn (issue 12) is not available")

CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


# ----------------------------------------------------------------------------- CIFAR-10 loader
def write_cifar(root, per_batch=7, seed=0):
    """Small files in exactly the CIFAR-10 python format: pickled (protocol 2) dicts with bytes keys."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in CIFAR_FILES:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        batch = {b"batch_label": f"{name} of 5".encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)]}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        written[name] = (data, labels)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in D.CIFAR10_CLASSES]}, f, protocol=2)
    return written


@pytest.mark.parametrize("nested", [False, True])
def test_cifar_loader_reads_the_python_batches(tmp_path, nested):
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    written = write_cifar(folder)
    images = D.load_cifar10(tmp_path)
    assert images.train_x.shape == (35, 3, 32, 32) and images.train_x.dtype == np.uint8
    assert images.test_x.shape == (7, 3, 32, 32)
    data, labels = written["data_batch_2"]
    # row = 1024 red, then 1024 green, then 1024 blue values, each row-major over 32×32
    np.testing.assert_array_equal(images.train_x[7 + 3, 1, 2, 5], data[3, 1024 + 2 * 32 + 5])
    np.testing.assert_array_equal(images.train_y[7:14], labels)
    np.testing.assert_array_equal(images.test_x.reshape(7, -1), written["test_batch"][0])
    assert images.spec["name"] == "cifar10" and len(images.spec["sha1"]) == 40


def test_cifar_loader_errors_name_the_argument(tmp_path):
    with pytest.raises(D.DataError, match="--data: .* is not a directory"):
        D.load_cifar10(tmp_path / "nowhere")
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(D.DataError, match="data_batch_3"):
        D.load_cifar10(tmp_path)


def test_cifar_loader_rejects_wrong_shapes_and_foreign_pickles(tmp_path):
    write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(D.DataError, match=r"\(N, 3072\)"):
        D.load_cifar10(tmp_path)

    class Exploit:
        def __reduce__(self):
            return (math.sqrt, (4.0,))

    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": []}, f, protocol=2)
    with pytest.raises(D.DataError, match="not allowed"):
        D.load_cifar10(tmp_path)


# ----------------------------------------------------------------------------- shapes10
def test_generated_set_is_deterministic_and_size_independent(tmp_path):
    a = D.shapes10(n_train=30, n_test=10, seed=3)
    b = D.shapes10(n_train=30, n_test=10, seed=3)
    c = D.shapes10(n_train=50, n_test=20, seed=3)
    other = D.shapes10(n_train=30, n_test=10, seed=4)
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert np.array_equal(a.train_x, c.train_x[:30]) and np.array_equal(a.test_x, c.test_x[:10])
    assert not np.array_equal(a.train_x, other.train_x)
    assert not np.array_equal(a.train_x[:10], a.test_x)  # the splits have their own streams
    assert np.bincount(c.train_y).tolist() == [5] * 10  # balanced: chance loss is exactly ln 10
    cached = D.shapes10(n_train=30, n_test=10, seed=3, cache_dir=tmp_path)
    again = D.shapes10(n_train=30, n_test=10, seed=3, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    assert np.array_equal(cached.train_x, a.train_x) and np.array_equal(again.train_x, a.train_x)


def test_generated_classes_differ():
    """Class means over many deformed samples must differ (the label carries information)."""
    s = D.shapes10(n_train=200, n_test=10)
    # mean "shape area": foreground pixels differ from the image's median colour
    gray = s.train_x.astype(float).mean(axis=1)
    dev = np.abs(gray - np.median(gray, axis=(1, 2), keepdims=True)).mean(axis=(1, 2))
    per_class = np.array([dev[s.train_y == k].mean() for k in range(10)])
    assert per_class.std() > 0


@pytest.mark.parametrize("bad", [0, 9, -1, 2.5])
def test_generated_set_bad_sizes(bad):
    with pytest.raises(ValueError, match="n_train"):
        D.shapes10(n_train=bad)


# ----------------------------------------------------------------------------- divergence rule
def test_divergence_rule_is_the_papers():
    v = np.zeros((6, 4))
    assert first_exceedance(v) is None
    v[:, 1] = DIVERGENCE_THRESHOLD  # equal is not "exceeds"
    assert first_exceedance(v) is None
    v[4, 3] = 1000.0001
    v[5, 0] = 5e6
    hit = first_exceedance(v)
    assert (hit.step, hit.layer) == (4, 3)
    w = np.zeros((3, 2))
    w[1, 1] = np.nan  # an overflowed variance counts
    assert (first_exceedance(w).step, first_exceedance(w).layer) == (1, 1)
    w[1, 1] = np.inf
    assert first_exceedance(w).step == 1
    with pytest.raises(ValueError, match="eps_var"):
        first_exceedance(np.zeros(3))


def test_variance_log_keeps_the_first_exceedance():
    log = VarianceLog(["a", "b"])
    log.record(0, [1.0, 2.0])
    assert not log.diverged
    log.record(1, [1001.0, 2.0])
    log.record(2, [1.0, 1e9])
    assert log.diverged and log.exceedance.step == 1 and log.exceedance.layer == 0
    assert log.array().shape == (3, 2)
    with pytest.raises(ValueError, match="layers"):
        log.record(3, [1.0])


# ----------------------------------------------------------------------------- eq 15
def _small_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 2, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(2 * 25, 10),
    ).double()
    with torch.no_grad():
        model[3].weight.zero_()  # a filter block starting at 0, like an ε branch (§5.2)
        model[3].bias.zero_()
        model[1].running_mean.uniform_(-0.1, 0.1)
    return model


def _batches(sizes=(5, 3, 4)):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 3, 5, 5, generator=g, dtype=torch.float64), torch.randint(0, 10, (n,), generator=g))
            for n in sizes]


def test_mean_gradient_is_the_per_sample_average():
    """E_x[∇θ L] by an independent route: per-sample gradients, averaged over all samples."""
    from warptheory.experiments.landscape import mean_gradient

    model, batches = _small_model(), _batches()
    g = mean_gradient(model, batches)
    model.eval()
    ref = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    count = 0
    for x, y in batches:
        for i in range(len(y)):
            model.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
            for n, p in model.named_parameters():
                ref[n] += p.grad
            count += 1
    for n in ref:
        # float64 sums of ≤ 12 terms of O(1): a few ulps
        torch.testing.assert_close(g[n], ref[n] / count, rtol=1e-12, atol=1e-14)
    assert model.training is False  # restored (it was put in eval above)


def test_eq15_direction_layer_norms_equal_the_expected_gradient_norms():
    from warptheory.experiments.landscape import direction_norm, gradient_informed_direction, mean_gradient

    model, batches = _small_model(), _batches()
    g = mean_gradient(model, batches)
    d = gradient_informed_direction(g, torch.Generator().manual_seed(7))
    for n in g:
        assert float(d[n].norm()) == pytest.approx(float(g[n].norm()), rel=1e-12)
    assert float(d["3.weight"].norm()) > 0  # the zero-initialised block still moves under eq 15
    warp = {"3.weight", "3.bias"}
    dw = gradient_informed_direction(g, torch.Generator().manual_seed(7), include=warp)
    assert direction_norm(dw) == pytest.approx(direction_norm(g, warp), rel=1e-12)
    assert all(float(dw[n].abs().max()) == 0 for n in g if n not in warp)
    again = gradient_informed_direction(g, torch.Generator().manual_seed(7))
    assert all(torch.equal(d[n], again[n]) for n in g)


def test_filter_normalisation_ignores_zero_filters_and_one_dimensional_parameters():
    from warptheory.experiments.landscape import filter_normalized_direction

    model = _small_model()
    d = filter_normalized_direction(model, torch.Generator().manual_seed(3))
    w = model[0].weight.detach()
    for f in range(w.shape[0]):
        assert float(d["0.weight"][f].norm()) == pytest.approx(float(w[f].norm()), rel=1e-12)
    assert float(d["3.weight"].abs().max()) == 0  # θ_f = 0 gives d_f = 0: the ε-branch case of §5.2
    assert float(d["0.bias"].abs().max()) == 0 and float(d["1.weight"].abs().max()) == 0


def test_loss_line_and_surface_restore_the_parameters():
    from warptheory.experiments.landscape import (evaluate_loss, gradient_informed_direction, loss_line,
                                                  loss_surface, mean_gradient)

    model, batches = _small_model(), _batches()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = mean_gradient(model, batches)
    d1 = gradient_informed_direction(g, torch.Generator().manual_seed(1))
    d2 = gradient_informed_direction(g, torch.Generator().manual_seed(2))
    line = loss_line(model, batches, d1, [-1.0, 0.0, 1.0])
    surf = loss_surface(model, batches, d1, d2, [0.0, 1.0], [0.0, 2.0])
    assert line[1] == pytest.approx(evaluate_loss(model, batches)[0], rel=1e-12)
    assert surf[0, 0] == pytest.approx(line[1], rel=1e-12) and surf[0, 1] == pytest.approx(line[2], rel=1e-12)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


# ----------------------------------------------------------------------------- runner
CALLS = []


def _square(config, seed):
    CALLS.append((config["x"], seed))
    if config.get("fail_on") == seed:
        raise RuntimeError("planted failure")
    return {"value": config["x"] ** 2 + seed, "_attachments": {".bin": bytes([seed])}}


def test_resumption_skips_finished_seeds(tmp_path):
    store = ResultStore(tmp_path)
    tasks = [Task("sq", {"x": 3}, s) for s in range(3)]
    CALLS.clear()
    first = run_tasks(tasks, _square, store, progress=False)
    assert [r["value"] for r in first] == [9, 10, 11] and len(CALLS) == 3
    assert store.path(tasks[1], ".bin").read_bytes() == b"\x01"
    store.path(tasks[1]).unlink()  # as if that seed had never finished
    CALLS.clear()
    again = run_tasks(tasks, _square, store, progress=False)
    assert CALLS == [(3, 1)] and [r["value"] for r in again] == [9, 10, 11]
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_interrupted_run_keeps_what_finished(tmp_path):
    store = ResultStore(tmp_path)
    tasks = [Task("sq", {"x": 2, "fail_on": 1}, s) for s in range(3)]
    CALLS.clear()
    with pytest.raises(RuntimeError, match="planted"):
        run_tasks(tasks, _square, store, progress=False)
    assert store.has(tasks[0]) and not store.has(tasks[1])
    tasks = [Task("sq", {"x": 2, "fail_on": 1}, 0), Task("sq", {"x": 2, "fail_on": 1}, 2)]
    CALLS.clear()
    run_tasks(tasks, _square, store, progress=False)
    assert CALLS == [(2, 2)]


def test_executors_give_the_same_results(tmp_path):
    tasks = [Task("sq", {"x": 5}, s) for s in range(4)]
    serial = run_tasks(tasks, _square, ResultStore(tmp_path / "a"), progress=False)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        threaded = run_tasks(tasks, _square, ResultStore(tmp_path / "b"), executor=pool, progress=False)
    pool, close, workers = make_executor("threads:2")
    try:
        by_address = run_tasks(tasks, _square, ResultStore(tmp_path / "c"), executor=pool, progress=False)
    finally:
        close()
    assert workers == 2
    assert [r["value"] for r in serial] == [r["value"] for r in threaded] == [r["value"] for r in by_address]


@pytest.mark.slow
def test_dask_scheduler_address(tmp_path):
    distributed = pytest.importorskip("distributed")
    tasks = [Task("sq", {"x": 4}, s) for s in range(3)]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as lc:
        pool, close, _ = make_executor(lc.scheduler_address)
        try:
            results = run_tasks(tasks, _square, ResultStore(tmp_path), executor=pool, progress=False)
        finally:
            close()
    assert [r["value"] for r in results] == [16, 17, 18]


@pytest.mark.parametrize("address", ["threads:0", "processes:x", "bogus", 3])
def test_bad_executor_address(address):
    with pytest.raises(ValueError, match="--executor"):
        make_executor(address)


# ----------------------------------------------------------------------------- CLI bad input
def _run_cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, fragment", [
    (["experiment", "table3", "--quick"], "invalid choice"),
    (["experiment", "table1", "--quick", "--seeds", "0"], "--seeds: expected an integer ≥ 1"),
    (["experiment", "table1", "--quick", "--seeds", "-2"], "--seeds"),
    (["experiment", "table1", "--quick", "--seeds", "two"], "invalid int value"),
    (["experiment", "table1", "--quick", "--executor", "gpu:4"], "--executor"),
])
def test_cli_bad_input_one_line_exit_2(argv, fragment, capsys, tmp_path):
    code, err = _run_cli(argv + ["--out", str(tmp_path / "o")], capsys)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing was started


def test_cli_missing_data_directory(capsys, tmp_path):
    code, err = _run_cli(["experiment", "table1", "--quick", "--data", str(tmp_path / "missing"),
                          "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "--data" in err and "not a directory" in err


def test_python_api_rejects_unknown_experiment(tmp_path):
    from warptheory.experiments import run_experiment

    with pytest.raises(ValueError, match="experiment: expected one of table1"):
        run_experiment("figure9", quick=True, out=tmp_path)


# ----------------------------------------------------------------------------- report: at-init column, partial rows
def test_at_init_prediction_reads_warptheory_stability():
    from warptheory.experiments import protocol as P
    from warptheory.experiments.report import PREDICTION_RATIO, stability_prediction
    from warptheory.stability import resnet_gradient_growth

    rows = P.experiment_rows("table1")
    preds = [stability_prediction(r, 8) for r in rows]
    plain = resnet_gradient_growth(gamma=1.0, eps_init="zero", stages=((16, 1), (32, 1), (64, 1)),
                                   skip_warps="all").growth
    for row, p in zip(rows, preds):
        # ε-weights start at 0 in every row: each is the plain ResNet-8 at initialisation
        # (γ cancels in the plain ResNet's growth analytically; numerically to a few ulps)
        assert p["growth"] == p["baseline"] == pytest.approx(plain, rel=1e-13) and p["explodes_at_init"] is False
        assert p["fan_in_growth"] > 0 and p["fan_in_ratio"] == p["fan_in_growth"] / p["baseline"]
    # the fan-in counterfactual explodes exactly where γ = 1 and the ε path is not detached (s03_1 note)
    explodes = [p["fan_in_reading"] == "explodes" for p in preds]
    assert explodes == [r.model["bn_weight_init"] == 1.0 and not r.model["detach"] for r in rows]
    assert all(p["fan_in_ratio"] >= PREDICTION_RATIO for p, e in zip(preds, explodes) if e)
    assert stability_prediction(rows[0], 8) == preds[0]  # deterministic
    warped, unwarped = (stability_prediction(r, 8) for r in P.experiment_rows("skip"))
    assert (warped["skip_warps"], unwarped["skip_warps"]) == ("all", "none")
    assert unwarped["fan_in_growth"] > 0 and unwarped["fan_in_growth"] != warped["fan_in_growth"]
    pretrained = stability_prediction(P.experiment_rows("table2")[0], 8)
    assert pretrained["fan_in_growth"] is None and "pretraining" in pretrained["fan_in_reading"]
    assert pretrained["model"].startswith("deformable") and pretrained["skip_warps"] == "none"
    assert stability_prediction(rows[0], None) is None


def _record(seed, diverged, accuracy):
    return {"task": {"seed": seed}, "diverged": diverged, "test_accuracy": accuracy, "wall_time_s": 1.0,
            "cpu_time_s": 1.0, "exceedance": None, "eps_var": [[0.1]], "nonfinite_loss_step": None}


def test_row_summary_of_partial_rows_and_claims_paired_by_seed():
    from warptheory.experiments import protocol as P
    from warptheory.experiments.report import _by_seed, paired_claim, row_summary

    row = P.experiment_rows("table1")[6]
    empty = row_summary(row, [], 8)
    assert empty["seeds"] == 0 and empty["verdict"] == "not run" and empty["accuracy_mean"] is None
    a = [_record(0, False, 0.5), _record(2, False, 0.7)]  # seed 1 not stored yet
    b = [_record(1, False, 0.1), _record(2, False, 0.2)]
    assert _by_seed(a, range(3)) == [0.5, None, 0.7] and _by_seed(b, range(3)) == [None, 0.1, 0.2]
    assert paired_claim(_by_seed(a, range(3)), _by_seed(b, range(3)))["pairs"] == 1  # only seed 2 pairs


# ----------------------------------------------------------------------------- training smoke tests
def _quick_config(row_index=6, plant=None, table="table1"):
    from warptheory.experiments import protocol as P

    spec = D.shapes10(P.QUICK.n_train, P.QUICK.n_test).spec
    return P.run_config(P.experiment_rows(table)[row_index], P.QUICK, spec, plant=plant)


@needs_nn
def test_divergence_detector_fires_on_a_planted_divergence_and_not_on_a_stable_run():
    from warptheory.experiments.training import train_run

    stable = train_run(_quick_config(), seed=0)
    assert stable["diverged"] is False and stable["exceedance"] is None
    assert np.asarray(stable["eps_var"]).shape == (6, 7)  # every step, every SelfWarp of ResNet-8
    assert np.isfinite(stable["eps_var"]).all() and max(map(max, stable["eps_var"])) < 1.0
    planted = train_run(_quick_config(plant={"step": 3, "eps_weight_noise": 50.0}), seed=0)
    assert planted["diverged"] is True and planted["exceedance"]["step"] == 3
    assert planted["exceedance"]["value"] > DIVERGENCE_THRESHOLD
    assert planted["eps_var"][:3] == stable["eps_var"][:3]  # identical until the plant


@needs_nn
def test_table2_pretraining_keeps_eps_at_zero_then_trains_it():
    from warptheory.experiments.training import train_run

    record = train_run(_quick_config(row_index=1, table="table2"), seed=0)  # pretraining + grad scaling
    assert len(record["pretrain_loss"]) == 3 and record["steps_done"] == 6
    assert record["eps_var"][0] == [0.0] * 7  # the first step after pretraining still has ε = 0
    assert max(record["eps_var"][-1]) > 0


@needs_nn
@pytest.mark.parametrize("name", ["table1", "table2", "skip", "bifurcation", "landscape"])
def test_quick_experiment_writes_report_results_and_figures(name, tmp_path, capsys):
    out = tmp_path / name
    assert main(["experiment", name, "--quick", "--seeds", "1", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert results["experiment"] == name and results["budget"] == "quick" and results["seeds"] == 1
    for fig in results["figures"]:
        assert (out / fig).stat().st_size > 0 and f"]({fig})" in report
    rows = {"table1": 8, "table2": 7, "skip": 2, "bifurcation": 2, "landscape": 1}[name]
    assert len(results["rows"]) == rows
    for row in results["rows"]:
        assert row["seeds"] == 1 and 0 <= row["diverged"] <= 1 and row["paper"]
        assert row["verdict"] in ("reproduces", "does not reproduce", "partly")
    if name in ("table1", "table2", "skip"):
        assert results["pattern"]["verdict"] in ("reproduces", "does not reproduce")
        assert report.count("\n|") >= rows + 2
    if name == "bifurcation":
        assert "fig2_bifurcation.png" in results["figures"]
    if name == "landscape":
        assert {"fig3_landscape_joint.png", "fig4_landscape_disentangled.png"} <= set(results["figures"])
        assert set(results["landscape"]["line_verdicts"]["0"]) == {"eq15_warp", "eq15_conv", "filter_warp",
                                                                    "filter_conv"}
    if name in ("table1", "table2", "skip"):
        assert all(r["stability_prediction"]["explodes_at_init"] is False for r in results["rows"])
        assert results["stability_prediction"]["growth_at_init"] and "At-init prediction" in report
    assert results["partial"] is False and "PARTIAL" not in report
    before = sorted(p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json"))
    assert main(["experiment", name, "--quick", "--seeds", "1", "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")) == before  # all resumed
    # --report-only runs nothing: with 2 seeds planned, every seed-1 run is reported missing
    assert main(["experiment", name, "--quick", "--seeds", "2", "--out", str(out), "--report-only"]) == 0
    assert sorted(p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")) == before
    partial = json.loads((out / "results.json").read_text())
    assert partial["partial"] is True and "PARTIAL REPORT" in (out / "report.md").read_text()
    assert {m["seed"] for m in partial["missing"]} == {1} and len(partial["missing"]) >= rows
    assert all(r["seeds"] == 1 and r["seeds_planned"] == 2 and not r["complete"] for r in partial["rows"])
    if name in ("table1", "table2", "skip"):
        assert partial["pattern"]["complete"] is False
        assert partial["pattern"]["verdict"] in ("incomplete", "does not reproduce")
