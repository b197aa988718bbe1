"""Keras' Conv2D and BatchNormalization, computed with fused PyTorch kernels on PyTorch.

The U-Net is channels-last, as Keras is. Keras' PyTorch backend runs a
channels-last convolution by copying its input into channels-first memory and
back into channels-last memory (two copies of every activation, and two more
of every gradient), then adds the bias and applies the activation as separate
passes; its batch normalization is six element-wise passes over the batch, each
differentiated on its own. At the default config this made PyTorch's train
step 2.5x slower than TensorFlow's on the 2-core development CPU.

A channels-last tensor seen through ``permute(0, 3, 1, 2)`` is already what
PyTorch calls ``channels_last`` memory, which its oneDNN (CPU) and cuDNN (GPU)
convolutions take as it is; so here the convolution is one ``conv2d`` call with
the bias inside, and batch normalization one ``batch_norm`` call with its own
fused gradient. That halves PyTorch's step (measured by the benchmark; see the docs'
"Backends" page).

The classes keep Keras' names, arguments, weights and math: only ``call``
differs, and only on PyTorch in the cases below; everything else (TensorFlow,
JAX, strides, dilation, groups, masks, renormalization) is Keras' own code.
Keras addresses the weights in ``.weights.h5`` files by class name and
position, so the keras.io example's checkpoints load unchanged.
"""

import keras
from keras import ops

from ddim_keras.core import PACKAGE


def _on_torch():
    return keras.backend.backend() == "torch"


def _channels_first_view(inputs):
    """(batch, H, W, C) as PyTorch's (batch, C, H, W) in channels_last memory, without a copy."""
    import torch

    view = ops.convert_to_tensor(inputs).permute(0, 3, 1, 2)
    if not view.is_contiguous(memory_format=torch.channels_last):
        view = view.contiguous(memory_format=torch.channels_last)
    return view


def _channels_last(outputs):
    # PyTorch's (batch, C, H, W) in channels_last memory back to Keras' layout: a view.
    return outputs.permute(0, 2, 3, 1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D``; on PyTorch one fused ``conv2d`` (bias included) per call."""

    def _fused_on_torch(self):
        # PyTorch's symmetric padding equals Keras' "same" for odd kernels at stride 1.
        return (
            _on_torch()
            and self.data_format == "channels_last"
            and self.groups == 1
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and (self.padding == "valid" or all(size % 2 for size in self.kernel_size))
        )

    def call(self, inputs):
        if not self._fused_on_torch():
            return super().call(inputs)
        import torch
        import torch.nn.functional as F

        # (H, W, in, out) -> PyTorch's (out, in, H, W); small, so copied once per call.
        kernel = ops.convert_to_tensor(self.kernel).permute(3, 2, 0, 1)
        kernel = kernel.contiguous(memory_format=torch.channels_last)
        bias = ops.convert_to_tensor(self.bias) if self.use_bias else None
        padding = [size // 2 for size in self.kernel_size] if self.padding == "same" else 0
        outputs = _channels_last(
            F.conv2d(_channels_first_view(inputs), kernel, bias, padding=padding)
        )
        if self.activation is not None:
            return self.activation(outputs)
        return outputs


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization``; on PyTorch one fused ``batch_norm`` per call.

    Training normalizes by the batch's mean and biased variance and moves the
    moving statistics as Keras does: ``moving * momentum + batch * (1 - momentum)``.
    """

    def _fused_on_torch(self, inputs, mask):
        return (
            _on_torch()
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused_on_torch(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import torch
        import torch.nn.functional as F

        # Statistics in float32 at least, as Keras does (bfloat16/float16 overflow here).
        inputs = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        images = _channels_first_view(inputs)
        dtype = images.dtype
        gamma = ops.cast(self.gamma, dtype) if self.scale else None
        beta = ops.cast(self.beta, dtype) if self.center else None
        if training and self.trainable:
            # With momentum 1 PyTorch writes the batch's mean and its unbiased variance
            # into these buffers; Keras' moving variance follows the biased one.
            channels = images.shape[1]
            batch_mean = torch.zeros(channels, dtype=dtype, device=images.device)
            batch_variance = torch.zeros(channels, dtype=dtype, device=images.device)
            outputs = F.batch_norm(
                images,
                batch_mean,
                batch_variance,
                gamma,
                beta,
                training=True,
                momentum=1.0,
                eps=self.epsilon,
            )
            count = images.numel() // channels
            with torch.no_grad():
                variance = batch_variance * ((count - 1) / count)
                self.moving_mean.assign(
                    ops.cast(self.moving_mean, dtype) * self.momentum
                    + batch_mean * (1.0 - self.momentum)
                )
                self.moving_variance.assign(
                    ops.cast(self.moving_variance, dtype) * self.momentum
                    + variance * (1.0 - self.momentum)
                )
        else:
            outputs = F.batch_norm(
                images,
                ops.cast(self.moving_mean, dtype),
                ops.cast(self.moving_variance, dtype),
                gamma,
                beta,
                training=False,
                eps=self.epsilon,
            )
        return ops.cast(_channels_last(outputs), self.compute_dtype)
