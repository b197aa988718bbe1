"""How far a few-step sampler lands from the solution the model itself defines.

``python -m ddim_keras.sampler_error`` prints what :func:`solution_errors`
measures: the RMSE between each sampler's images and those of 1000 steps of the
example's DDIM from the same noise.
"""

import numpy as np

from ddim_keras.core import checks
from ddim_keras.sampling.chunks import sample
from ddim_keras.sampling.step_rules import steps_for_calls


def solution_errors(
    model,
    samplers,
    calls_list,
    reference_steps=1000,
    num_images=64,
    seed=0,
    batch_size=None,
    on_cell=None,
    reference_model=None,
):
    """How far each sampler's images are from the solution the model defines.

    The reference is ``reference_steps`` steps of the example's sampler (DDIM,
    time spacing) from the same initial noise; each (sampler, spacing) in
    ``samplers`` samples with at most each budget of ``calls_list`` network
    calls (Heun's steps take two calls but the last, so it makes the largest
    odd number within the budget). Returns ``{label: {budget: rmse}}``, the RMSE
    in [0, 1] pixel units. ``on_cell(label, budget, rmse)`` is called after
    each cell. ``reference_model``: another model whose decode is the reference
    (a distilled student's teacher), the same size; None: ``model`` itself.
    """
    noise = model.initial_noise(num_images, seed)
    reference = sample(
        model if reference_model is None else reference_model,
        noise,
        reference_steps,
        seed=seed,
        batch_size=batch_size,
    )
    errors = {}
    for sampler_name, spacing in samplers:
        label = checks.sampler_label(sampler_name, spacing)
        errors[label] = {}
        for budget in calls_list:
            steps = steps_for_calls(sampler_name, budget)
            images = sample(
                model,
                noise,
                steps,
                seed=seed,
                batch_size=batch_size,
                sampler=sampler_name,
                spacing=spacing,
            )
            rmse = float(np.sqrt(np.mean((images - reference) ** 2)))
            errors[label][budget] = rmse
            if on_cell is not None:
                on_cell(label, budget, rmse)
    return errors
