"""The synthetic training data and model the risk tests share (built once per session)."""
from __future__ import annotations

import pytest

from paycell.risk import train
from paycell.risk.synthetic import generate

# Small enough to fit in a few seconds, large enough for ~75 held-out frauds of every pattern.
USERS, DAYS, SEED = 2_000, 30, 7


@pytest.fixture(scope="session")
def synthetic_data() -> train.Dataset:
    return train.build_dataset(generate(users=USERS, days=DAYS, seed=SEED), holdout_share=0.2)


@pytest.fixture(scope="session")
def synthetic_model(synthetic_data):
    return train.fit(synthetic_data, seed=SEED)
