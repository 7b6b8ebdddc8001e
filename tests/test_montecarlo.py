"""Tests of warptheory.montecarlo: reproducibility, executors, engines, distributions."""
import concurrent.futures

import numpy as np
import pytest

from warptheory.montecarlo import IIDCase, _numpy_warp_all, draw, run_iid

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


def test_stand_in_engine_matches_warping_module():
    warping = pytest.importorskip("warptheory.warping")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 7))
    e = 0.8 * rng.standard_normal((2, 2, 9, 7))
    g = rng.standard_normal((2, 3, 9, 7))
    for padding in ("periodic", "zeros"):
        y, gx, ge = _numpy_warp_all(x, e, g, "cos", padding)
        gx2, ge2 = warping.warp_backward(x, e, g, kernel="cos", padding=padding)
        # float64 sums of ≤ 8 O(1) terms per element: a few ulps
        np.testing.assert_allclose(y, warping.warp(x, e, kernel="cos", padding=padding), atol=1e-13)
        np.testing.assert_allclose(gx, gx2, atol=1e-13)
        np.testing.assert_allclose(ge, ge2, atol=1e-12)


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
