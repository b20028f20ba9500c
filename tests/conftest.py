"""Fixtures and the Hypothesis profiles.  Plain helpers live in ``tests/helpers.py``: test
files import them from there, never from here."""

from pathlib import Path

import pytest

import symderiv

from .helpers import EXAMPLES, GENERATED, ROOT  # noqa: F401  (still importable from here, for older files)


@pytest.fixture(scope="session")
def seed_path() -> Path:
    return EXAMPLES / "seed_rnn.sdm"


@pytest.fixture(scope="session")
def seed_derivation(seed_path):
    """The derivation of the seed RNN, derived once (tests only read it)."""
    return symderiv.derive(symderiv.load(seed_path))


def _register_hypothesis_profiles() -> None:
    """Hypothesis profiles, chosen by the environment variable HYPOTHESIS_PROFILE.

    ``dev`` (the default) is quick, for everyday runs; ``ci`` runs the fuzz tests at full
    strength (at least 10,000 examples in total, see tests/test_fuzz.py).  Per-example time
    limits are enforced by the tests themselves with a hard timer, so Hypothesis's own
    deadline is off (SymPy's first calls fill caches and would make it flaky)."""
    import os

    from hypothesis import HealthCheck, settings

    common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                         HealthCheck.filter_too_much])
    settings.register_profile("dev", max_examples=40, **common)
    settings.register_profile("ci", max_examples=1000, print_blob=True, **common)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


_register_hypothesis_profiles()
