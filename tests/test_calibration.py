"""Tests of warptheory.calibration: exact truths of the null estimators, reproducibility, bad input."""
import concurrent.futures

import numpy as np
import pytest

from warptheory import calibration as cal
from warptheory import stats


def test_estimators_have_their_exact_truth():
    """Means over all replicate values sit on the truth within a few SE (64 × 4000 replicates)."""
    for estimator in ("mean", "second_moment"):
        vals = cal.null_replicates(estimator, 4000, seed=5)
        m, se = stats.batch_means(vals.ravel())
        assert abs(m - cal.TRUTH[estimator]) < 5 * se, (estimator, m, se)


def test_replicate_values_are_reproducible_with_any_executor():
    a = cal.null_replicates("second_moment", 300, seed=9)
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        b = cal.null_replicates("second_moment", 300, seed=9, executor=ex)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, cal.null_replicates("second_moment", 300, seed=10))


def test_calibrate_on_normal_replicates_is_nominal():
    """Independent route: IID normal replicate values, where the Student-t law is exact."""
    vals = np.random.default_rng(4).standard_normal((64, 60_000))
    res = cal.calibrate(vals, 0.0, 1.0, "normal")
    assert abs(res.rates[1e-2] - 1e-2) < 5 * np.sqrt(1e-2 / 60_000)
    assert abs(res.coverage - 0.95) < 5 * np.sqrt(0.05 * 0.95 / 60_000)
    assert all(abs(c) < 5 for c in res.smooth)
    assert abs(res.shift_rate - res.shift_predicted) < 5 * np.sqrt(0.25 / 60_000)


def test_calibrate_sees_a_miscalibrated_se():
    """Replicates twice as correlated as assumed (SE too small by √2): the scale component explodes."""
    rng = np.random.default_rng(6)
    common = rng.standard_normal((32, 20_000))
    vals = np.repeat(common, 2, axis=0)  # 64 'replicates' that are 32 independent ones, each twice
    res = cal.calibrate(vals, 0.0, 1.0, "duplicated")
    assert res.smooth[1] > 20 and res.rates[1e-2] > 0.05


def test_bad_input():
    with pytest.raises(ValueError, match="estimator"):
        cal.null_replicates("variance", 10, seed=1)
    with pytest.raises(ValueError, match="n_experiments"):
        cal.null_replicates("mean", 0, seed=1)
