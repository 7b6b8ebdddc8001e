"""Tests of warptheory.montecarlo: reproducibility, executors, engines, distributions."""
import concurrent.futures

import numpy as np
import pytest

from warptheory.montecarlo import IIDCase, _warp_all, draw, run_iid

CASE = IIDCase("tri", d=2, channels=2, sigma_eps=0.4, mu_x=1.0, size=16, batch=2)


def test_bitwise_reproducible_and_seed_dependent():
    a = run_iid(CASE, replicates=3, batches=2, seed=11)
    b = run_iid(CASE, replicates=3, batches=2, seed=11)
    c = run_iid(CASE, replicates=3, batches=2, seed=12)
    for q in a.replicates:
        assert np.array_equal(a.replicates[q], b.replicates[q])
    assert not np.array_equal(a.replicates["y"], c.replicates["y"])


def test_thread_executor_gives_identical_results():
    a = run_iid(CASE, replicates=4, batches=1, seed=5)
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        b = run_iid(CASE, replicates=4, batches=1, seed=5, executor=ex)
    for q in a.replicates:
        assert np.array_equal(a.replicates[q], b.replicates[q])


@pytest.mark.slow
def test_dask_local_cluster_gives_identical_results():
    distributed = pytest.importorskip("distributed")
    a = run_iid(CASE, replicates=2, batches=1, seed=5)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
            distributed.Client(lc) as client:
        b = run_iid(CASE, replicates=2, batches=1, seed=5, executor=client)
    for q in a.replicates:
        assert np.array_equal(a.replicates[q], b.replicates[q])


def test_engine_is_one_plan_bitwise_the_functional_calls():
    """The Monte-Carlo takes y and both gradients from one plan: bitwise warp + warp_backward."""
    from warptheory import warping

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 7))
    e = 0.8 * rng.standard_normal((2, 2, 9, 7))
    g = rng.standard_normal((2, 3, 9, 7))
    for padding in ("periodic", "zeros"):
        y, gx, ge = _warp_all(x, e, g, "cos", padding, None)
        gx2, ge2 = warping.warp_backward(x, e, g, kernel="cos", padding=padding)
        assert y.tobytes() == warping.warp(x, e, kernel="cos", padding=padding).tobytes()
        assert gx.tobytes() == gx2.tobytes() and ge.tobytes() == ge2.tobytes()


def test_engine_import_failure_is_an_error():
    """No stand-in engine: when the engine cannot be imported (here numba is made unimportable),
    a run fails with that ImportError instead of falling back to other arithmetic."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['numba'] = None\n"
        "from warptheory.montecarlo import IIDCase, run_iid\n"
        "try:\n    run_iid(IIDCase('tri', d=1, channels=1, sigma_eps=0.1, size=8, batch=1), replicates=2)\n"
        "except ImportError as exc:\n    print('error:', exc)\nelse:\n    print('ran without the engine')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "error:" in out.stdout and "numba" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("dist", ["gaussian", "uniform", "laplace"])
def test_draw_moments(dist):
    v = draw(np.random.default_rng(2), dist, -0.5, 1.5, 400_000)
    # SE of the mean 1.5/√4e5 ≈ 2.4e-3; of the s.d. ≲ 4e-3 for Laplace
    assert v.mean() == pytest.approx(-0.5, abs=0.012)
    assert v.std() == pytest.approx(1.5, abs=0.02)


def test_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        IIDCase("tri", d=1, channels=1, sigma_eps=0.1, padding="border")
    with pytest.raises(ValueError, match="x_dist"):
        IIDCase("tri", d=1, channels=1, sigma_eps=0.1, x_dist="cauchy")
    with pytest.raises(ValueError, match="replicates"):
        run_iid(CASE, replicates=1)
