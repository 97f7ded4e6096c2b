"""``--search``: samples of a suite's declared search space, run as Ray Tune trials under ASHA.

The space is data (:class:`simtoreal.bench.suites.SearchSpec`); it becomes Ray Tune domains
(``tune.loguniform``, ``tune.choice``, ...) and is sampled with a fixed random state, so the
same command draws the same samples and a killed search resumes like any sweep: each sample is an
ordinary trial with a stable id.
"""

from __future__ import annotations

from simtoreal.bench.runner import import_ray
from simtoreal.bench.suites import Suite, Trial, set_dotted
from simtoreal.errors import ConfigError


def tune_domain(entry: tuple):
    """The Ray Tune domain of one search-space entry, e.g. ``("loguniform", 1e-4, 1e-2)``."""
    _, tune = import_ray()
    kind, *args = entry
    if kind == "choice":
        return tune.choice(list(args[0]))
    return {"loguniform": tune.loguniform, "uniform": tune.uniform, "randint": tune.randint}[kind](
        *args
    )


def search_trials(
    name: str, suite: Suite, budget: str, seeds: int, samples: int, random_state: int = 0
) -> list[Trial]:
    """``samples`` configs drawn from the suite's space around its base trial, each run with
    seeds 0..seeds-1, as trials of the table group ``search``."""
    import numpy as np

    spec = suite.search
    if spec is None:
        raise ConfigError(
            f"suite {name!r} declares no search space: --search works on a suite "
            "with one (teacher, transfer, or a --suite-file entry with 'search')."
        )
    if samples < 1:
        raise ConfigError(f"--samples {samples}: use 1 or more.")
    base = next(t for t in suite.trials if t.name == spec.base)
    domains = {key: tune_domain(entry) for key, entry in spec.space.items()}
    rng = np.random.RandomState(random_state)
    trials = []
    for i in range(samples):
        config, shown = base.resolved(budget), []
        for key, domain in domains.items():
            value = domain.sample(random_state=rng)
            value = value.item() if hasattr(value, "item") else value
            config = set_dotted(config, key, value)
            shown.append(
                f"{key.rsplit('.', 1)[-1]}={value:.3g}"
                if isinstance(value, float)
                else f"{key.rsplit('.', 1)[-1]}={value}"
            )
        label = f"sample {i}: {', '.join(shown)}"
        trials += [
            Trial(name, label, "search", base.kind, budget, seed, config, base.needs_data)
            for seed in range(seeds)
        ]
    return trials
