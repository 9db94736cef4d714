#!/usr/bin/env python3
"""Reference epsilons from Google's dp-accounting for FedPrivacy's tests.

For a grid of (sampling, q, noise multiplier z, steps) this prints dp-accounting's
RDP epsilon at delta 1e-5 and the order that gave it, with its default orders:
Poisson sampling (add-or-remove-one), a fixed sample size without replacement
(replace-one; population 10,000, sample q * 10,000) and no sampling.

    pip install dp-accounting   # a test reference only, not a dependency of the package
    python3 Benchmarks/dp_accounting_reference.py          # JSON
    python3 Benchmarks/dp_accounting_reference.py --swift  # the rows of Tests/FedPrivacyTests/DPAccountingReference.swift
"""
import json
import sys
from importlib.metadata import version

import absl.logging
import dp_accounting
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant as rdp

DELTA = 1e-5
POPULATION = 10_000

POISSON = [  # (q, z, steps)
    (0.001, 0.5, 1000), (0.001, 1.0, 10000), (0.001, 2.0, 100000), (0.002, 0.8, 5000),
    (0.005, 1.1, 1000), (0.005, 0.7, 20000), (0.01, 1.1, 1000), (0.01, 0.6, 100),
    (0.01, 2.5, 50), (0.01, 4.0, 10000), (0.02, 1.0, 2500), (0.05, 1.5, 200),
    (0.05, 0.9, 1000), (0.1, 1.0, 100), (0.1, 3.0, 1000), (0.2, 2.0, 50),
    (0.25, 0.8, 10), (0.5, 1.0, 20), (0.5, 5.0, 1000), (0.75, 2.0, 5),
    (1.0, 1.0, 1), (1.0, 2.0, 10), (1.0, 5.0, 100), (1.0, 10.0, 1000),
]
FIXED = [  # (q, z, steps): sample q * POPULATION of POPULATION without replacement
    (0.001, 1.0, 1000), (0.01, 1.1, 1000), (0.01, 2.0, 100), (0.05, 1.5, 200),
    (0.1, 1.0, 100), (0.5, 2.0, 20), (1.0, 2.0, 10),
]
NONE = [(1.0, 1.0, 1), (1.0, 3.0, 100)]


def epsilon(sampling, q, z, steps):
    gaussian = dp_event.GaussianDpEvent(z)
    if sampling == "poisson":
        accountant = rdp.RdpAccountant()
        event = dp_event.PoissonSampledDpEvent(q, gaussian)
    elif sampling == "fixed":
        accountant = rdp.RdpAccountant(
            neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
        event = dp_event.SampledWithoutReplacementDpEvent(POPULATION, round(q * POPULATION), gaussian)
    else:
        accountant = rdp.RdpAccountant()
        event = gaussian
    accountant.compose(dp_event.SelfComposedDpEvent(event, steps))
    eps, order = accountant.get_epsilon_and_optimal_order(DELTA)
    return float(eps), float(order)


def main():
    # dp-accounting warns for each order whose fractional series does not
    # converge (it then skips that order); FedPrivacy skips the same orders.
    absl.logging.set_verbosity(absl.logging.ERROR)
    rows = []
    for sampling, grid in (("poisson", POISSON), ("fixed", FIXED), ("none", NONE)):
        for q, z, steps in grid:
            eps, order = epsilon(sampling, q, z, steps)
            rows.append({"sampling": sampling, "q": q, "noise": z, "steps": steps,
                         "epsilon": eps, "order": order})
    if "--swift" in sys.argv:
        print(f"// dp-accounting {version('dp-accounting')}, delta {DELTA}, population {POPULATION} (fixed)")
        for r in rows:
            print(f'    .init(sampling: "{r["sampling"]}", q: {r["q"]!r}, noise: {r["noise"]!r}, '
                  f'steps: {r["steps"]}, epsilon: {r["epsilon"]!r}, order: {r["order"]!r}),')
    else:
        print(json.dumps({"dp_accounting": version("dp-accounting"), "delta": DELTA,
                          "population": POPULATION, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
