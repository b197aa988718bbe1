"""Every sampler and step spacing in float64 NumPy, written from the papers, for tests.

An independent restatement: it calls nothing in ``ddim_keras`` and follows the
papers' own variables rather than the package's, so that a test can compare the
compiled loops (``reverse_diffusion_graph``) with it for every sampler x spacing.

* the grids from the keras.io example's cosine schedule (angles linear in t,
  signal = cos, noise = sin) and the spacings' definitions;
* DDIM with eta = 0: Song et al. 2020, Eq. 12 in the paper's alpha (= signal**2);
* DPM-Solver++(2M): Lu et al. 2022, Algorithm 2 (data prediction, multistep);
* DPM-Solver++(3M): the third-order multistep update of the authors' reference
  implementation, here in Newton's divided differences over lambda;
* Heun: Karras et al. 2022 (EDM), Algorithm 1 without churn, in EDM's variables
  y = x / alpha and sigma = noise / signal.

Like the package (and the example), K steps make K network calls at the grid's K
points (Heun two per step but the last) and return the last call's data
prediction; the transition out of the last point is never taken.

The toy: data ~ N(MU, SCALE**2) per pixel, whose exact denoiser is linear (see
``tests/test_samplers.py``).
"""

import numpy as np

MU, SCALE = 0.3, 0.5
MIN_SIGNAL, MAX_SIGNAL = 0.02, 0.95
#: EDM's rho of the karras spacing.
RHO = 7.0
#: The reference implementation lowers the final orders when steps < 10, its steps
#: being transitions between grid points.
LOWER_ORDER_FINAL_BELOW = 10


def denoise(x, alpha, sigma):
    """E[x0 | x] for x = alpha x0 + sigma eps, x0 ~ N(MU, SCALE**2) (rates, not squares)."""
    return MU + alpha * SCALE**2 / (alpha**2 * SCALE**2 + sigma**2) * (x - alpha * MU)


def cosine_rates(times):
    """(signal, noise) of the example's cosine schedule at diffusion times in [0, 1]."""
    start, end = np.arccos(MAX_SIGNAL), np.arccos(MIN_SIGNAL)
    angles = start + np.asarray(times, np.float64) * (end - start)
    return np.cos(angles), np.sin(angles)


def grid(spacing, steps):
    """(signal, noise) at the ``steps`` points where the network is called, noisiest first."""
    if spacing == "time":
        # The example's: t = 1, 1 - 1/K, ..., 1/K.
        return cosine_rates(1.0 - np.arange(steps) / steps)
    (signal_1, signal_0), (noise_1, noise_0) = cosine_rates([1.0, 0.0])
    # From t = 1 to t = 0 in equal parts of the spacing's variable.
    fraction = np.arange(steps) / max(steps - 1, 1)
    if spacing == "logsnr":
        lambda_1, lambda_0 = np.log(signal_1 / noise_1), np.log(signal_0 / noise_0)
        lambdas = lambda_1 + fraction * (lambda_0 - lambda_1)
        # alpha**2 = sigmoid(2 lambda), sigma**2 = sigmoid(-2 lambda).
        return 1.0 / np.sqrt(1.0 + np.exp(-2 * lambdas)), 1.0 / np.sqrt(1.0 + np.exp(2 * lambdas))
    if spacing == "karras":
        # EDM's sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
        # with EDM's sigma = noise / signal.
        top, bottom = (noise_1 / signal_1) ** (1 / RHO), (noise_0 / signal_0) ** (1 / RHO)
        sigmas = (top + fraction * (bottom - top)) ** RHO
        signal = 1.0 / np.sqrt(1.0 + sigmas**2)
        return signal, sigmas * signal
    raise ValueError(spacing)


def ddim(x, signal, noise):
    """Song et al. Eq. 12 with sigma_t = 0, alpha_t the paper's alpha (our signal**2)."""
    alphas = signal**2
    for i in range(len(alphas) - 1):
        x0 = denoise(x, signal[i], noise[i])
        eps = (x - np.sqrt(alphas[i]) * x0) / np.sqrt(1.0 - alphas[i])
        x = np.sqrt(alphas[i + 1]) * x0 + np.sqrt(1.0 - alphas[i + 1]) * eps
    return denoise(x, signal[-1], noise[-1])


def heun(x, signal, noise):
    """EDM Algorithm 1 (deterministic): Euler, then the trapezoid with d at the Euler point."""
    sigmas = noise / signal
    y = x / signal[0]

    def slope(y, i):
        # d = (y - D(y; sigma)) / sigma, D on EDM's y = x / alpha.
        return (y - denoise(y * signal[i], signal[i], noise[i])) / sigmas[i]

    for i in range(len(sigmas) - 1):
        d = slope(y, i)
        y_euler = y + (sigmas[i + 1] - sigmas[i]) * d
        y = y + (sigmas[i + 1] - sigmas[i]) * 0.5 * (d + slope(y_euler, i + 1))
    return denoise(y * signal[-1], signal[-1], noise[-1])


def dpm_solver_order(order, transition, transitions, lower_final_below=LOWER_ORDER_FINAL_BELOW):
    """The reference implementation's order of transition ``transition`` (0-based).

    Warm-up: the n-th transition has n earlier predictions, so order <= n + 1.
    Lower-order final (only when transitions < ``lower_final_below``): order <=
    transitions - n.
    """
    order = min(order, transition + 1)
    if transitions < lower_final_below:
        order = min(order, transitions - transition)
    return order


def dpm_solver_pp(x, signal, noise, order, lower_final_below=LOWER_ORDER_FINAL_BELOW):
    """Multistep DPM-Solver++ with data prediction, 2M (Algorithm 2) or 3M.

    x_next = (sigma_next / sigma) x + alpha_next * integral_0^h e^(u - h) D(lambda + u) du,
    with D replaced by the order's polynomial in lambda through the last predictions.
    """
    lambdas = np.log(signal / noise)
    transitions = len(lambdas) - 1
    predictions = []
    for n in range(transitions):
        predictions.append(denoise(x, signal[n], noise[n]))
        h = lambdas[n + 1] - lambdas[n]
        m_0 = predictions[-1]
        step_order = dpm_solver_order(order, n, transitions, lower_final_below)
        if step_order == 1:
            # Algorithm 2's first step (and DDIM): D constant.
            data = m_0
        elif step_order == 2:
            # Algorithm 2: D_i = (1 + 1/(2 r_i)) m_{i-1} - 1/(2 r_i) m_{i-2}, r_i = h_{i-1} / h_i.
            r = (lambdas[n] - lambdas[n - 1]) / h
            data = (1.0 + 1.0 / (2.0 * r)) * m_0 - 1.0 / (2.0 * r) * predictions[-2]
        if step_order < 3:
            x = noise[n + 1] / noise[n] * x - signal[n + 1] * np.expm1(-h) * data
            continue
        # Third order: the quadratic in u = lambda - lambda_n through the last three
        # predictions, m_0 + slope u + curvature u**2, from divided differences.
        m_1, m_2 = predictions[-2], predictions[-3]
        h_0, h_1 = lambdas[n] - lambdas[n - 1], lambdas[n - 1] - lambdas[n - 2]
        first_0, first_1 = (m_0 - m_1) / h_0, (m_1 - m_2) / h_1
        curvature = (first_0 - first_1) / (h_0 + h_1)
        slope = first_0 + h_0 * curvature  # the quadratic's derivative at lambda_n
        # integral_0^h e^(u-h) u^k du for k = 0, 1, 2, written with expm1(-h) = e^-h - 1.
        moment_0 = -np.expm1(-h)
        moment_1 = h + np.expm1(-h)
        moment_2 = h**2 - 2.0 * h - 2.0 * np.expm1(-h)
        # Integrating the quadratic exactly would weight the curvature by moment_2. The
        # reference implementation's update (D2 = h**2 * curvature, phi_3 = -moment_2 /
        # (2 h**2)) weights it by moment_2 / 2; that update is the one reproduced here.
        x = noise[n + 1] / noise[n] * x + signal[n + 1] * (
            moment_0 * m_0 + moment_1 * slope + 0.5 * moment_2 * curvature
        )
    return denoise(x, signal[-1], noise[-1])


def sample(sampler, spacing, steps, initial_noise, **options):
    """The last call's data prediction after ``steps`` steps of ``sampler`` on ``spacing``.

    ``options``: ``lower_final_below`` for the DPM-Solver++ samplers.
    """
    x = np.asarray(initial_noise, np.float64)
    signal, noise = grid(spacing, steps)
    if sampler == "ddim":
        return ddim(x, signal, noise)
    if sampler == "heun":
        return heun(x, signal, noise)
    return dpm_solver_pp(x, signal, noise, {"dpmpp_2m": 2, "dpmpp_3m": 3}[sampler], **options)


def float32_tolerance(sampler, spacing, steps, scale=2e-6):
    """How far a float32 run of the sampler may be from this float64 one.

    ``scale`` for DDIM and DPM-Solver++ (they were at most 4.7e-7 apart on the three
    backends, at 1 to 20 steps). Heun's Euler step works on y = x / alpha
    (x50 at t = 1) and its correction divides the end point's rounding by the next
    sigma, so a float32 Heun step is only as accurate as scale times the step's
    sigma ratio (about 150 for the 2-step logsnr grid).
    """
    if sampler != "heun" or steps < 2:
        return scale
    signal, noise = grid(spacing, steps)
    sigmas = noise / signal
    return scale * float(np.max(sigmas[:-1] / sigmas[1:]))
