"""Sizes of the ``stability`` validation family: images per replicate for ≥ 99 % power at 1 %.

Run from the repository root: ``python tools/size_stability_family.py`` (about 3 minutes).  For every case of
``validation/test_stability.py`` a pilot of 256 replicates (its own seeds, never reused) of a quarter batch
estimates the s.d. per image of every checked gain; the printed ``IMAGES`` table is ``SIZING_MARGIN`` × the
images per replicate that give SE ≤ 0.01·scale/(t_thr + z_0.99) over 64 replicates, rounded up (at least the
batch norm's 4096 positions per channel).  With 255 degrees of freedom the pilot s.d. is within ±9 % (2σ);
the margin 2 on the variance leaves the realised power ≥ 0.99 unless the 63-dof SE estimate comes out 41 %
high (probability ~1e-6 per check).  Paste the table into the test module.
"""
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "validation"))

import test_stability as fam  # noqa: E402

from warptheory.stability_montecarlo import default_batch, default_size, selfwarp_gain_mc  # noqa: E402

PILOT = 256
MARGIN = 2.0


def main():
    rows = {}
    for cid, case in fam.CASES.items():
        full = default_batch(default_size(case["sigma_eps"], case["k"], case["d"]), case["d"])
        batch = max(fam.min_images(case), full // 4)
        pilot = selfwarp_gain_mc(**case, replicates=PILOT, batch=batch, seed=fam.seed_of(cid) + 7)
        exact = fam.theory(cid)
        need = 0.0
        for field in fam.checked_fields(case):
            sd_per_image = pilot.se[field] * math.sqrt(PILOT * batch)
            target = fam.required_se(fam.scale_of(exact, field), fam.threshold())
            need = max(need, (sd_per_image / math.sqrt(fam.REPLICATES) / target) ** 2)
        rows[cid] = max(fam.min_images(case), math.ceil(MARGIN * need))
        print(f"    {cid!r}: {rows[cid]},", flush=True)


if __name__ == "__main__":
    main()
