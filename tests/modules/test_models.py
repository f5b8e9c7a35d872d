"""Every model ``modules`` exports through the same checks: output shape and finite values, it
learns a repeated batch, a ``fast_dev_run`` fit. How each family is built and fed: ``families.py``."""

import pytest

from tests.modules.families import cases, check_fast_dev_run_fit, check_learns, check_outputs

CASES = cases()


@pytest.mark.parametrize(("cls", "args"), CASES)
def test_outputs_have_the_right_shape_and_are_finite(cls, args):
    check_outputs(cls, args)


@pytest.mark.parametrize(("cls", "args"), CASES)
def test_learns_a_repeated_batch(cls, args):
    check_learns(cls, args)


@pytest.mark.parametrize(("cls", "args"), CASES)
def test_fast_dev_run_fit(cls, args, tmp_path, in_tmp):
    check_fast_dev_run_fit(cls, args, tmp_path)
