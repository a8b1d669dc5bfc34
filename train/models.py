"""The models, in Flax NNX: the seed's CIFAR-10 CNN and torchvision's ResNet-18.

Both take NHWC float images ``(N, H, W, 3)`` and return logits ``(N, num_classes)``.
Their PyTorch twins are in :mod:`jaxloss.train.torch_models`; :mod:`jaxloss.parity.weights` moves
weights between the two so that the same weights give the same logits.

Conventions that make the twins equal:

* Every convolution has explicit torch-style padding ``((p, p), (p, p))``, never
  ``'SAME'`` (which pads asymmetrically for strided convolutions).
* :class:`SeedCNN` flattens in torch's NCHW order: the last feature map
  ``(N, 4, 4, 64)`` is transposed to ``(N, 64, 4, 4)`` before the reshape, so the
  first Linear's weight is just torch's weight transposed (no row permutation in
  :mod:`jaxloss.parity.weights`).
* :class:`BatchNorm2d` is torch's BatchNorm, not Flax's: momentum 0.1 in torch's
  sense (``running = 0.9 * running + 0.1 * batch``), eps 1e-5, normalisation with
  the biased batch variance, ``running_var`` updated with the *unbiased* one
  (Flax's ``nnx.BatchNorm`` uses the biased variance and the opposite momentum
  convention), and a ``num_batches_tracked`` counter like torch's state_dict.
  ``model.train()`` / ``model.eval()`` switch it, as they switch ``nnx.BatchNorm``.
* ``torch_init=True`` (the default) draws fresh weights from torch's
  distributions: ``Conv2d`` / ``Linear`` weights from ``kaiming_uniform_(a=sqrt(5))``
  i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases from the same bound. For
  ResNet-18 it reproduces torchvision's ``resnet18()`` constructor, which re-draws
  every conv weight with ``kaiming_normal_(mode='fan_out', nonlinearity='relu')``
  and sets BatchNorm to weight 1 / bias 0 (the Linear head keeps torch's default).
  The draws use JAX's random generator, so the *distribution* equals torch's, not
  the bits: to start both frameworks from identical weights, convert them.
  ``torch_init=False`` uses Flax's defaults (lecun_normal kernels, zero biases).

Parameters are float32. ``dtype`` (keyword, default None: the promoted dtype of input
and parameters, float32 for float32 images) is the computation dtype, e.g.
``jnp.bfloat16`` for mixed precision; BatchNorm statistics, the global average pool and
the running averages are computed in float32 at least and the buffers keep their dtype.
For a float64 model (``jax_enable_x64`` on), cast every floating leaf of
``nnx.state(model)`` to float64 with ``nnx.update``, as :mod:`jaxloss.parity.twin` does for
``--dtype float64``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxloss.train.conv import conv_general_dilated
from jaxloss.train.pooling import max_pool2d

Array = jax.Array

__all__ = [
    "MODEL_NAMES",
    "BasicBlock",
    "BatchNorm2d",
    "ResNet18",
    "SeedCNN",
    "build_model",
    "torch_order_layers",
]

MODEL_NAMES = ("seed-cnn", "resnet18")
_ACTIVATIONS: dict[str | None, Callable[[Array], Array] | None] = {
    None: None,
    "none": None,
    "relu": jax.nn.relu,
}


# --------------------------------------------------------------------------- initialisers
# Drawing with jax.random compiles one threefry kernel per tensor shape (about 1 s of CPU
# each: 15 s to build a ResNet-18 eagerly on a small CPU). The initialisers below draw in
# fixed-size chunks from one compiled kernel instead, then slice and reshape: the same
# numbers eagerly and under tracing (nnx.jit / nnx.eval_shape use lax.map over the chunks).
_CHUNK = 1 << 16


@jax.jit
def _chunk(key: Array, loc: Array, scale: Array, normal: Array) -> Array:
    u = jax.random.uniform(key, (_CHUNK,), jnp.float32, minval=-1.0, maxval=1.0)
    z = jax.random.normal(key, (_CHUNK,), jnp.float32)
    return loc + scale * jnp.where(normal, z, u)


def _sample(key: Array, shape: Any, dtype: Any, scale: float, normal: bool) -> Array:
    """``scale * U(-1, 1)`` or ``scale * N(0, 1)`` of ``shape``, drawn chunk by chunk."""
    shape = tuple(shape)
    n = math.prod(shape)
    count = max(1, -(-n // _CHUNK))
    args = (jnp.float32(0.0), jnp.float32(scale), jnp.bool_(normal))
    if isinstance(key, jax.core.Tracer):
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(count))
        flat = jax.lax.map(lambda k: _chunk(k, *args), keys).reshape(-1)
    else:
        parts = [np.asarray(_chunk(jax.random.fold_in(key, i), *args)) for i in range(count)]
        flat = jnp.asarray(np.concatenate(parts))
    return flat[:n].reshape(shape).astype(dtype)


def _uniform_init(bound: float) -> nnx.Initializer:
    """U(-bound, bound): torch's kaiming_uniform_(a=sqrt(5)) and bias init use bound 1/sqrt(fan_in)."""

    def init(key: Array, shape: Any, dtype: Any = jnp.float32) -> Array:
        return _sample(key, shape, dtype, bound, normal=False)

    return init


def _normal_init(std: float) -> nnx.Initializer:
    """N(0, std^2), untruncated: torch's kaiming_normal_."""

    def init(key: Array, shape: Any, dtype: Any = jnp.float32) -> Array:
        return _sample(key, shape, dtype, std, normal=True)

    return init


def _torch_bound(fan_in: int) -> float:
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def _conv(
    in_ch: int,
    out_ch: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: int = 0,
    use_bias: bool = True,
    init: str,
    dtype: Any,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """A torch ``Conv2d(in_ch, out_ch, kernel, stride, padding, bias=use_bias)`` in NHWC/HWIO.

    ``init``: 'torch' (Conv2d's reset_parameters), 'torchvision-resnet' (kaiming_normal_
    fan_out relu), or 'flax' (Flax's defaults).
    """
    fan_in, fan_out = in_ch * kernel * kernel, out_ch * kernel * kernel
    kw: dict[str, Any] = {}
    if init == "torch":
        kw = {
            "kernel_init": _uniform_init(_torch_bound(fan_in)),
            "bias_init": _uniform_init(_torch_bound(fan_in)),
        }
    elif init == "torchvision-resnet":
        kw = {
            "kernel_init": _normal_init(math.sqrt(2.0 / fan_out)),
            "bias_init": nnx.initializers.zeros_init(),
        }
    return nnx.Conv(
        in_ch,
        out_ch,
        kernel_size=(kernel, kernel),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        conv_general_dilated=conv_general_dilated,  # im2col for tiny maps on CPU (train.conv)
        rngs=rngs,
        **kw,
    )


def _linear(in_f: int, out_f: int, *, torch_init: bool, dtype: Any, rngs: nnx.Rngs) -> nnx.Linear:
    """A torch ``Linear(in_f, out_f)``; the kernel is torch's weight transposed, ``(in_f, out_f)``."""
    kw: dict[str, Any] = {}
    if torch_init:
        kw = {
            "kernel_init": _uniform_init(_torch_bound(in_f)),
            "bias_init": _uniform_init(_torch_bound(in_f)),
        }
    return nnx.Linear(in_f, out_f, dtype=dtype, param_dtype=jnp.float32, rngs=rngs, **kw)


def _max_pool(x: Array, window: int, stride: int, padding: int = 0) -> Array:
    """torch ``max_pool2d``: padding counts as -inf, gradient to the first maximum of a window
    (:func:`jaxloss.train.pooling.max_pool2d`, bit-identical to torch and without the scatter that
    ``reduce_window``'s gradient costs on XLA:CPU)."""
    return max_pool2d(x, window, stride, padding)


def _activation(name: str | None) -> Callable[[Array], Array] | None:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of None, 'relu'; got {name!r}")
    return _ACTIVATIONS[name]


def _check_images(x: Array, model: str, size: int | None = None) -> None:
    if x.ndim != 4 or x.shape[-1] != 3:
        hint = (
            " (it looks like NCHW: transpose with x.transpose(0, 2, 3, 1))"
            if x.ndim == 4 and x.shape[1] == 3
            else ""
        )
        raise ValueError(f"{model} expects NHWC images of shape (N, H, W, 3), got {tuple(x.shape)}{hint}")
    if size is not None and x.shape[1:3] != (size, size):
        raise ValueError(
            f"{model} expects {size}x{size} images (its first Linear takes 64*4*4), got {tuple(x.shape)}"
        )


# --------------------------------------------------------------------------- the seed's CNN
class SeedCNN(nnx.Module):
    """The seed's CIFAR-10 network, layer for layer.

    Conv(3->32, 5, padding 2), MaxPool(2), Conv(32->32, 5, padding 2), MaxPool(2),
    Conv(32->64, 5, padding 2), MaxPool(2), Flatten (torch's NCHW order), Linear(1024->64),
    Linear(64->num_classes). The seed has no activation functions (the network is linear
    in its input); ``activation='relu'`` puts a ReLU after every conv (before its pool)
    and after the first Linear, as :class:`jaxloss.train.torch_models.TorchSeedCNN` does.

    Input ``(N, 32, 32, 3)`` float, output logits ``(N, num_classes)``.

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxloss.train.models import SeedCNN
    >>> SeedCNN(rngs=nnx.Rngs(0))(jnp.zeros((2, 32, 32, 3))).shape
    (2, 10)
    """

    def __init__(
        self,
        *,
        rngs: nnx.Rngs,
        num_classes: int = 10,
        activation: str | None = None,
        torch_init: bool = True,
        dtype: Any = None,
    ) -> None:
        _activation(activation)
        init = "torch" if torch_init else "flax"
        self.conv1 = _conv(3, 32, 5, padding=2, init=init, dtype=dtype, rngs=rngs)
        self.conv2 = _conv(32, 32, 5, padding=2, init=init, dtype=dtype, rngs=rngs)
        self.conv3 = _conv(32, 64, 5, padding=2, init=init, dtype=dtype, rngs=rngs)
        self.fc1 = _linear(64 * 4 * 4, 64, torch_init=torch_init, dtype=dtype, rngs=rngs)
        self.fc2 = _linear(64, num_classes, torch_init=torch_init, dtype=dtype, rngs=rngs)
        self.activation = activation
        self.num_classes = num_classes

    def __call__(self, x: Array) -> Array:
        _check_images(x, "SeedCNN", 32)
        act = _activation(self.activation) or (lambda h: h)
        for conv in (self.conv1, self.conv2, self.conv3):
            x = _max_pool(act(conv(x)), 2, 2)
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # torch's NCHW flatten order
        return self.fc2(act(self.fc1(x)))

    def torch_order(self) -> list[nnx.Module]:
        """The parameterised layers in the order of the torch twin's state_dict."""
        return [self.conv1, self.conv2, self.conv3, self.fc1, self.fc2]


# --------------------------------------------------------------------------- torch-exact BatchNorm
class BatchNorm2d(nnx.Module):
    """``torch.nn.BatchNorm2d`` over the last (channel) axis of NHWC input.

    Training mode (``use_running_average=False``, set by ``model.train()``) normalises
    with the batch mean and *biased* batch variance and updates, as torch does::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)
        num_batches_tracked += 1

    with ``n = N*H*W`` (torch's unbiased running variance; momentum 0.1 here is Flax's
    0.9). Evaluation mode (``model.eval()``) normalises with the running statistics.
    ``y = (x - mean) / sqrt(var + eps) * scale + bias``; ``scale``/``bias`` are torch's
    ``weight``/``bias`` (Params), ``mean``/``var``/``num_batches_tracked`` torch's
    buffers (BatchStats). Statistics are computed in float32 whatever the input dtype.
    Under ``jax.jit`` with a batch sharded over devices the statistics are those of the
    global batch (SyncBatchNorm semantics, not DDP's per-device ones).

    >>> import jax.numpy as jnp
    >>> from jaxloss.train.models import BatchNorm2d
    >>> bn = BatchNorm2d(3)
    >>> bn(jnp.ones((2, 4, 4, 3))).shape, bn.momentum
    ((2, 4, 4, 3), 0.1)
    """

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-5,
        momentum: float = 0.1,
        use_running_average: bool = False,
        dtype: Any = None,
        rngs: nnx.Rngs | None = None,
    ) -> None:
        del rngs  # deterministic init (weight 1, bias 0), as torch's
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.use_running_average = use_running_average
        self.dtype = dtype

    def set_view(self, use_running_average: bool | None = None) -> None:
        """Used by ``nnx.view(model, use_running_average=...)``, like ``nnx.BatchNorm``'s."""
        if use_running_average is not None:
            self.use_running_average = use_running_average

    def __call__(self, x: Array) -> Array:
        if x.shape[-1] != self.num_features:
            raise ValueError(
                f"BatchNorm2d({self.num_features}) got {x.shape[-1]} channels (input {tuple(x.shape)})"
            )
        out_dtype = self.dtype or x.dtype
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # bf16/f16 -> f32; f64 stays
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            n = math.prod(x.shape[:-1])
            if n <= 1:
                raise ValueError(
                    f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}"
                )
            mean = jnp.mean(xf, axis=axes)
            sq_sum = jnp.sum(jnp.square(xf - mean), axis=axes)
            var = sq_sum / n  # biased: normalises the batch, as in torch
            m = self.momentum
            unbiased = jax.lax.stop_gradient(sq_sum) / (n - 1)  # torch's running_var rule
            stat = self.mean[...].dtype  # keep the buffers' dtype whatever the input's
            self.mean[...] = ((1 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)).astype(stat)
            self.var[...] = ((1 - m) * self.var[...] + m * unbiased).astype(stat)
            self.num_batches_tracked[...] = self.num_batches_tracked[...] + 1
        y = (xf - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]
        return y.astype(out_dtype)


# --------------------------------------------------------------------------- ResNet-18
class BasicBlock(nnx.Module):
    """torchvision's ``BasicBlock``: conv3x3-bn-relu-conv3x3-bn, plus identity or downsample, relu.

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxloss.train.models import BasicBlock
    >>> block = nnx.eval_shape(lambda: BasicBlock(8, 8, 1, init="torch", dtype=jnp.float32, rngs=nnx.Rngs(0)))
    >>> type(block).__name__
    'BasicBlock'
    """

    def __init__(
        self, inplanes: int, planes: int, stride: int, *, init: str, dtype: Any, rngs: nnx.Rngs
    ) -> None:
        self.conv1 = _conv(
            inplanes, planes, 3, stride=stride, padding=1, use_bias=False, init=init, dtype=dtype, rngs=rngs
        )
        self.bn1 = BatchNorm2d(planes, dtype=dtype)
        self.conv2 = _conv(planes, planes, 3, padding=1, use_bias=False, init=init, dtype=dtype, rngs=rngs)
        self.bn2 = BatchNorm2d(planes, dtype=dtype)
        if stride != 1 or inplanes != planes:
            self.downsample = nnx.Sequential(
                _conv(inplanes, planes, 1, stride=stride, use_bias=False, init=init, dtype=dtype, rngs=rngs),
                BatchNorm2d(planes, dtype=dtype),
            )
        else:
            self.downsample = None

    def __call__(self, x: Array) -> Array:
        out = jax.nn.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return jax.nn.relu(out + identity)

    def torch_order(self) -> list[nnx.Module]:
        layers: list[nnx.Module] = [self.conv1, self.bn1, self.conv2, self.bn2]
        if self.downsample is not None:
            layers += list(self.downsample.layers)
        return layers


class ResNet18(nnx.Module):
    """torchvision's ``resnet18(num_classes=num_classes)``, in NHWC.

    Stem: conv 7x7 stride 2 padding 3 (no bias), BatchNorm, ReLU, max-pool 3x3 stride 2
    padding 1; with ``cifar_stem=True`` the common CIFAR stem instead: conv 3x3 stride 1
    padding 1, BatchNorm, ReLU, no max-pool. Then four stages of two
    :class:`BasicBlock` (64, 128, 256, 512 channels, stride 1, 2, 2, 2), global average
    pool and ``Linear(512, num_classes)``. Layer names follow torchvision's
    (``conv1``, ``bn1``, ``layer1`` .. ``layer4``, ``fc``). Starts in training mode
    (BatchNorm uses batch statistics); call ``model.eval()`` for inference.

    >>> from flax import nnx
    >>> from jaxloss.train.models import ResNet18
    >>> model = nnx.eval_shape(lambda: ResNet18(rngs=nnx.Rngs(0), num_classes=10))
    >>> model.fc.kernel.shape
    (512, 10)
    """

    def __init__(
        self,
        *,
        rngs: nnx.Rngs,
        num_classes: int = 10,
        cifar_stem: bool = False,
        torch_init: bool = True,
        dtype: Any = None,
    ) -> None:
        init = "torchvision-resnet" if torch_init else "flax"
        if cifar_stem:
            self.conv1 = _conv(
                3, 64, 3, stride=1, padding=1, use_bias=False, init=init, dtype=dtype, rngs=rngs
            )
        else:
            self.conv1 = _conv(
                3, 64, 7, stride=2, padding=3, use_bias=False, init=init, dtype=dtype, rngs=rngs
            )
        self.bn1 = BatchNorm2d(64, dtype=dtype)
        self.cifar_stem = cifar_stem
        inplanes = 64
        for i, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
            blocks = nnx.Sequential(
                BasicBlock(inplanes, planes, stride, init=init, dtype=dtype, rngs=rngs),
                BasicBlock(planes, planes, 1, init=init, dtype=dtype, rngs=rngs),
            )
            setattr(self, f"layer{i}", blocks)
            inplanes = planes
        self.fc = _linear(512, num_classes, torch_init=torch_init, dtype=dtype, rngs=rngs)
        self.num_classes = num_classes

    def _stages(self) -> list[nnx.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def __call__(self, x: Array) -> Array:
        _check_images(x, "ResNet18")
        x = jax.nn.relu(self.bn1(self.conv1(x)))
        if not self.cifar_stem:
            x = _max_pool(x, 3, 2, padding=1)
        for stage in self._stages():
            x = stage(x)
        pooled = jnp.mean(x.astype(jnp.promote_types(x.dtype, jnp.float32)), axis=(1, 2))
        x = pooled.astype(x.dtype)  # AdaptiveAvgPool2d(1) + flatten
        return self.fc(x)

    def torch_order(self) -> list[nnx.Module]:
        """The parameterised layers in the order of torchvision's resnet18 state_dict."""
        layers: list[nnx.Module] = [self.conv1, self.bn1]
        for stage in self._stages():
            for block in stage.layers:
                layers += block.torch_order()
        return layers + [self.fc]


# --------------------------------------------------------------------------- registry
def torch_order_layers(model: nnx.Module) -> list[nnx.Module]:
    """The Conv / Linear / BatchNorm2d layers of ``model`` in its torch twin's state_dict order.

    >>> from flax import nnx
    >>> from jaxloss.train.models import SeedCNN, torch_order_layers
    >>> [type(m).__name__ for m in torch_order_layers(SeedCNN(rngs=nnx.Rngs(0)))]
    ['Conv', 'Conv', 'Conv', 'Linear', 'Linear']
    """
    if not hasattr(model, "torch_order"):
        raise TypeError(f"{type(model).__name__} has no torch_order(): not a train.models model")
    return model.torch_order()  # type: ignore[no-any-return]


def build_model(name: str, *, rngs: nnx.Rngs, num_classes: int = 10, **kw: Any) -> nnx.Module:
    """``'seed-cnn'`` -> :class:`SeedCNN`, ``'resnet18'`` -> :class:`ResNet18`; ``kw`` go to the constructor.

    >>> from flax import nnx
    >>> from jaxloss.train.models import build_model
    >>> type(build_model("seed-cnn", rngs=nnx.Rngs(0))).__name__
    'SeedCNN'
    """
    key = name.lower().replace("_", "-")
    if key == "seed-cnn":
        return SeedCNN(rngs=rngs, num_classes=num_classes, **kw)
    if key == "resnet18":
        return ResNet18(rngs=rngs, num_classes=num_classes, **kw)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
