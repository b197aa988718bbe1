"""Sampler math: step rules, step spacings, the reverse-process loops, as pure functions.

A noisy image is ``signal_rate * image + noise_rate * noise`` with
``signal_rate**2 + noise_rate**2 == 1`` (signal_rate = sqrt(alpha) in the DDIM
paper's notation); lambda = log(signal_rate / noise_rate) is the half log-SNR
in which the DPM-Solver++ updates are written. Nothing here knows about a
network: the loops are given a ``denoise_fn`` and a ``schedule_fn``.

Step rules (:mod:`~ddim_keras.sampling.step_rules`):

* ``ddim``: the generalised update of the DDIM paper (Song et al. 2020, Eq. 12,
  with the noise scale sigma of Eq. 16). ``eta = 0`` is deterministic DDIM, the
  keras.io example's sampler (first order); ``eta = 1`` uses the DDPM posterior
  variance.
* ``dpmpp_2m`` / ``dpmpp_3m``: multistep DPM-Solver++ with data prediction
  (Lu et al. 2022, "DPM-Solver++", Algorithm 2 and its third-order multistep
  extension), second and third order, with lower-order warm-up steps and, for
  10 steps or fewer (K steps make K - 1 transitions, and the reference
  implementation lowers the final orders when it has fewer than 10), lower-order
  final steps; from 11 steps on the final steps keep the full order.
* ``heun``: the second-order Heun method of EDM (Karras et al. 2022,
  Algorithm 1, deterministic), two network calls per step but the last.

Step spacings (:mod:`~ddim_keras.sampling.spacings`), where the K network calls
of K steps are made:

* ``time``: uniform in diffusion time, t = 1, 1 - 1/K, ..., 1/K (the example's,
  computed by :func:`~ddim_keras.sampling.spacings.time_grid` alone);
* ``logsnr``: uniform in lambda between the schedule's ends;
* ``karras``: EDM's spacing of sigma = noise_rate / signal_rate with rho = 7.

Every sampler makes its last call at the K-th grid point and returns that
call's predicted images, as the example does. The loops are in
:mod:`~ddim_keras.sampling.loops`, their per-backend compilation in
:mod:`~ddim_keras.sampling.compiled`, the chunked path from noise to images in
:mod:`~ddim_keras.sampling.chunks`, the stochastic steps' noise in
:mod:`~ddim_keras.sampling.keyed_noise`. Inpainting and image-to-image run the
same step rules from part-way down the grid, pasting the known part after each
step: their math is in :mod:`~ddim_keras.sampling.editing`, their loop in
:mod:`~ddim_keras.sampling.edit_loop`.
"""
