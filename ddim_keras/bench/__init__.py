"""The benchmark as a library: training and sampling speed, memory and FLOPs of a config.

``python -m ddim_keras.benchmark`` (:mod:`ddim_keras.cli.benchmark`) parses its flags,
calls :func:`~ddim_keras.bench.run.run_benchmark` (or, for ``--backends``,
:func:`~ddim_keras.bench.backends.compare_backends`) and prints the tables of
:mod:`~ddim_keras.bench.tables`; everything it measures is here, importable without
the command.

It runs on the active Keras backend (``KERAS_BACKEND``: tensorflow, jax or torch);
TensorFlow is needed only for the TensorFlow backend. It measures one config on
synthetic data of its shape (uniform random images in [0, 1]; the normalizer is
adapted on them), so it needs no dataset and no download:

* training (:mod:`~ddim_keras.bench.training`): the wall time of the first
  ``model.fit`` step (tracing and compilation included); then one ``model.fit``
  call of a warm-up step and ``train_steps`` timed steps, each timed from the end
  of the previous one by a callback (Keras reads the step's loss back before
  calling it, so each step has finished: images/s); then the same again with the
  callback run from Keras' callback threads (JAX and PyTorch; TensorFlow's loop
  calls it itself), which lets asynchronous dispatch (JAX, CUDA) queue the next
  steps while one runs (``pipelined_images_per_s``). Batches are one synthetic
  batch, repeated: a ``tf.data`` dataset on TensorFlow, an endless
  ``keras.utils.PyDataset`` of the NumPy batch on the other backends, so the input
  costs next to nothing;
* sampling (:mod:`~ddim_keras.bench.sampling`): images/s (and image-steps/s) of
  the compiled sampler (one compiled while-loop, after one warm-up call) and of the
  example's step-by-step Python loop, which calls the network eagerly once per step
  (after a one-step warm-up), on the same noise and steps, each timed ``repeats``
  times in turns (the median counts); their ratio, and the largest difference
  between their outputs; then the compiled sampler once more in reduced precision
  (by default generate's ``auto`` choice: bfloat16 on a CPU with native bfloat16,
  float16 on a GPU), its speed against both, and how far its output is from the
  float32 sampler's;
* data (:mod:`~ddim_keras.bench.data_pipeline`): images/s that the folder
  pipeline (``--dataset folder``) decodes and preprocesses from JPEGs of 256 x 256
  pixels written to a temporary folder (after a warm-up pass; median of 3 passes),
  beside the images/s the train step consumes: below 1x, data loading would starve
  the accelerator whenever images are decoded (the first epoch with ``--cache
  memory``, every epoch with ``--cache none``). The pipeline is the one training
  would use here: ``tf.data`` where TensorFlow is installed (whatever the Keras
  backend), else the NumPy/Pillow one of :mod:`ddim_keras.data.numpy_pipeline`;
* memory (:mod:`~ddim_keras.bench.system`): the process's peak resident set size
  (``ru_maxrss``), and on a GPU the backend's peak device memory;
* FLOPs (:mod:`~ddim_keras.bench.flops`): the network's forward FLOPs per image,
  counted analytically from its layers, the training FLOP/s this achieves, and a
  float32 matmul's FLOP/s (``keras.ops.matmul``) measured in the same process as
  the machine's practical limit (measured first and last; the faster run counts).

:mod:`~ddim_keras.bench.run` puts these together for one backend;
:mod:`~ddim_keras.bench.backends` compares backends, each in a child process;
:mod:`~ddim_keras.bench.defaults` holds the defaults, the seed and the names of the
parts. Timings are wall-clock times of one process; on a shared machine they vary
with whatever else runs, so the share of CPU time other processes took while
measuring is recorded too (``machine_load``; Linux only).

Nothing here imports Keras or a backend at import time: the command checks its
flags first, so that bad flags fail fast.
"""
