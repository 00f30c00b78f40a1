"""Image classifiers (flax NNX) and the pure function f that coded computing evaluates.

Every model maps a batch of NHWC images, shape (B, H, W, C), to logits of shape
(B, num_classes), and stores ``image_shape`` = (H, W, C) and ``num_classes`` so that
:func:`pure_apply` can turn it into f: R^d -> R^m with d = H * W * C and m = num_classes.

- :class:`LeNet5`: LeCun et al. (1998) with ReLU and max pooling.
- :class:`RepVGG`: Ding et al., "RepVGG: Making VGG-style ConvNets Great Again" (CVPR 2021),
  A0-style with configurable (small) widths and depths; :meth:`RepVGG.reparameterize` fuses
  each multi-branch block into one 3x3 convolution for inference.
- :class:`ViT`: Dosovitskiy et al. (ICLR 2021), a small pre-norm vision transformer.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from letcc_jax import _validation as check

__all__ = ["MODELS", "LeNet5", "RepVGG", "RepVGGBlock", "ViT", "make_model", "pure_apply"]


def _check_sizes(values: Sequence[int], name: str) -> tuple[int, ...]:
    """A sequence of Python or NumPy ints >= 1 as a tuple of ints (floats and bools refused)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of ints, got {values!r}.")
    if not all(check.is_int(v) and v >= 1 for v in values):
        raise ValueError(f"{name} must hold ints >= 1, got {tuple(values)}.")
    return tuple(int(v) for v in values)


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    image_shape = _check_sizes(image_shape, "image_shape")
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (H, W, C) with positive sizes, got {image_shape}.")
    return image_shape


class LeNet5(nnx.Module):
    """LeNet-5: conv 5x5 (6) - pool - conv 5x5 (16) - pool - dense 120 - 84 - num_classes.

    The first convolution pads to keep the size (as the original's 32x32 input did for 28x28
    digits); ReLU and 2x2 max pooling replace the original's tanh and trainable subsampling.

    Args:
        image_shape: (H, W, C) of the inputs; H and W at least 12.
        num_classes: number of logits.
        rngs: parameter initialisation keys.
    """

    def __init__(self, image_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10, *,
                 rngs: nnx.Rngs):
        self.image_shape = _check_image_shape(image_shape)
        self.num_classes = num_classes = check.check_positive_int(num_classes, "num_classes")
        height, width, channels = self.image_shape
        flat_h, flat_w = (height // 2 - 4) // 2, (width // 2 - 4) // 2
        if min(flat_h, flat_w) < 1:
            raise ValueError(f"LeNet5 needs images of at least 12x12, got {height}x{width}.")
        self.conv1 = nnx.Conv(channels, 6, (5, 5), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(6, 16, (5, 5), padding="VALID", rngs=rngs)
        self.fc1 = nnx.Linear(16 * flat_h * flat_w, 120, rngs=rngs)
        self.fc2 = nnx.Linear(120, 84, rngs=rngs)
        self.fc3 = nnx.Linear(84, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, H, W, C) images -> (B, num_classes) logits."""
        x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), (2, 2))
        x = nnx.max_pool(nnx.relu(self.conv2(x)), (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        return self.fc3(nnx.relu(self.fc2(nnx.relu(self.fc1(x)))))


def _fuse_conv_bn(kernel: jax.Array, bn: nnx.BatchNorm) -> tuple[jax.Array, jax.Array]:
    """Folds inference-mode BatchNorm into the preceding bias-free conv.

    BN(conv(x)) = gamma (W * x - mu) / sqrt(var + eps) + beta = (t W) * x + (beta - t mu)
    with t = gamma / sqrt(var + eps) per output channel.

    Args:
        kernel: (kh, kw, I, O) convolution kernel.
        bn: the BatchNorm over the O output channels.

    Returns:
        The (kh, kw, I, O) fused kernel and (O,) bias.
    """
    t = bn.scale[...] / jnp.sqrt(bn.var[...] + bn.epsilon)
    return kernel * t, bn.bias[...] - bn.mean[...] * t


class RepVGGBlock(nnx.Module):
    """RepVGG training-time block: BN(conv3x3(x)) + BN(conv1x1(x)) [+ BN(x)], before ReLU.

    The identity branch exists when ``in_features == out_features`` and ``stride == 1``. The
    3x3 conv pads by one and the 1x1 conv not at all, so with stride 2 both sample the same
    centres and the block can be fused into a single 3x3 conv (:meth:`fuse`).

    Args:
        in_features: input channels I.
        out_features: output channels O.
        stride: spatial stride of both convolutions.
        rngs: parameter initialisation keys.
    """

    def __init__(self, in_features: int, out_features: int, stride: int = 1, *,
                 rngs: nnx.Rngs):
        in_features = check.check_positive_int(in_features, "in_features")
        out_features = check.check_positive_int(out_features, "out_features")
        self.stride = stride = check.check_positive_int(stride, "stride")
        self.conv3 = nnx.Conv(in_features, out_features, (3, 3), strides=stride,
                              padding=((1, 1), (1, 1)), use_bias=False, rngs=rngs)
        self.bn3 = nnx.BatchNorm(out_features, momentum=0.9, rngs=rngs)
        self.conv1 = nnx.Conv(in_features, out_features, (1, 1), strides=stride,
                              padding="VALID", use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(out_features, momentum=0.9, rngs=rngs)
        has_identity = in_features == out_features and stride == 1
        self.bn_id = nnx.BatchNorm(in_features, momentum=0.9, rngs=rngs) if has_identity else None

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, H, W, I) -> (B, H', W', O), the sum of the branches (no activation)."""
        y = self.bn3(self.conv3(x)) + self.bn1(self.conv1(x))
        if self.bn_id is not None:
            y = y + self.bn_id(x)
        return y

    def fuse(self) -> nnx.Conv:
        """The single 3x3 conv with bias equal to this block in inference mode.

        The 1x1 kernel is zero-padded to 3x3 and the identity is the 3x3 kernel with a one at
        the centre of each channel's own input; each is folded with its BN and the kernels
        and biases are summed (Ding et al. 2021, section 3.3).
        """
        in_features, out_features = self.conv3.kernel.shape[2:]
        kernel, bias = _fuse_conv_bn(self.conv3.kernel[...], self.bn3)
        k1, b1 = _fuse_conv_bn(
            jnp.pad(self.conv1.kernel[...], ((1, 1), (1, 1), (0, 0), (0, 0))), self.bn1)
        kernel, bias = kernel + k1, bias + b1
        if self.bn_id is not None:
            identity = jnp.zeros((3, 3, in_features, in_features), kernel.dtype)
            identity = identity.at[1, 1].set(jnp.eye(in_features, dtype=kernel.dtype))
            k_id, b_id = _fuse_conv_bn(identity, self.bn_id)
            kernel, bias = kernel + k_id, bias + b_id
        return nnx.Conv(in_features, out_features, (3, 3), strides=self.stride,
                        padding=((1, 1), (1, 1)), use_bias=True,
                        kernel_init=lambda *_: kernel, bias_init=lambda *_: bias,
                        rngs=nnx.Rngs(0))


class RepVGG(nnx.Module):
    """RepVGG (A0-style): stages of RepVGG blocks, global average pooling, a linear head.

    Stage i has ``depths[i]`` blocks of ``widths[i]`` channels; its first block has stride
    ``strides[i]``. RepVGG-A0 itself is widths (48, 48, 96, 192, 1280), depths
    (1, 2, 4, 14, 1), strides all 2 on 224x224 inputs; the defaults here keep its shape
    (a one-block stem, deepening middle stages, a one-block last stage) at a size that trains
    on two CPU cores in minutes on 28x28 inputs.

    Args:
        image_shape: (H, W, C) of the inputs.
        num_classes: number of logits.
        widths: channels per stage.
        depths: blocks per stage.
        strides: stride of the first block of each stage.
        rngs: parameter initialisation keys.
    """

    def __init__(self, image_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10, *,
                 widths: Sequence[int] = (16, 32, 64, 128),
                 depths: Sequence[int] = (1, 2, 4, 1),
                 strides: Sequence[int] = (2, 2, 2, 1),
                 rngs: nnx.Rngs):
        self.image_shape = _check_image_shape(image_shape)
        self.num_classes = num_classes = check.check_positive_int(num_classes, "num_classes")
        widths, depths, strides = (_check_sizes(widths, "widths"), _check_sizes(depths, "depths"),
                                   _check_sizes(strides, "strides"))
        if not len(widths) == len(depths) == len(strides) or not depths:
            raise ValueError(
                "widths, depths and strides need one entry per stage (at least one stage); "
                f"got {widths}, {depths}, {strides}."
            )
        blocks = []
        in_features = self.image_shape[2]
        for width, depth, stride in zip(widths, depths, strides):
            for i in range(depth):
                blocks.append(RepVGGBlock(in_features, width, stride if i == 0 else 1, rngs=rngs))
                in_features = width
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(in_features, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, H, W, C) images -> (B, num_classes) logits."""
        for block in self.blocks:
            x = nnx.relu(block(x))
        return self.head(x.mean(axis=(1, 2)))

    def reparameterize(self) -> RepVGG:
        """The inference form: a copy whose every block is one 3x3 conv with bias.

        It computes the same function as this model in eval mode (BatchNorm using its running
        statistics). This model is left unchanged, so it can keep training; checkpoints store
        the training form.
        """
        deployed = nnx.clone(self)
        deployed.blocks = nnx.List(
            [b.fuse() if isinstance(b, RepVGGBlock) else b for b in deployed.blocks])
        return deployed


class _EncoderBlock(nnx.Module):
    """Pre-norm transformer block: x + MHA(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(num_heads, dim, decode=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.fc1 = nnx.Linear(dim, mlp_dim, rngs=rngs)
        self.fc2 = nnx.Linear(mlp_dim, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, T, dim) -> (B, T, dim)."""
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(nnx.gelu(self.fc1(self.norm2(x))))


class ViT(nnx.Module):
    """A small vision transformer: patch embedding, pre-norm encoder, mean-pooled tokens.

    Non-overlapping ``patch_size`` x ``patch_size`` patches are embedded linearly (a strided
    conv), a learned position embedding is added, and the mean of the output tokens feeds a
    LayerNorm and a linear head (mean pooling instead of a class token trains faster on small
    data and gives the same interface).

    Args:
        image_shape: (H, W, C) of the inputs; H and W divisible by ``patch_size``.
        num_classes: number of logits.
        patch_size: side of a patch.
        dim: token width.
        depth: number of encoder blocks.
        num_heads: attention heads (dividing ``dim``).
        mlp_dim: hidden width of each block's MLP.
        rngs: parameter initialisation keys.
    """

    def __init__(self, image_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10, *,
                 patch_size: int = 4, dim: int = 48, depth: int = 3, num_heads: int = 3,
                 mlp_dim: int = 96, rngs: nnx.Rngs):
        self.image_shape = _check_image_shape(image_shape)
        self.num_classes = num_classes = check.check_positive_int(num_classes, "num_classes")
        height, width, channels = self.image_shape
        patch_size, dim, depth, num_heads, mlp_dim = (
            check.check_positive_int(value, name) for value, name in (
                (patch_size, "patch_size"), (dim, "dim"), (depth, "depth"),
                (num_heads, "num_heads"), (mlp_dim, "mlp_dim")))
        if height % patch_size or width % patch_size:
            raise ValueError(
                f"Image size {height}x{width} is not divisible by patch_size={patch_size}."
            )
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}.")
        num_patches = (height // patch_size) * (width // patch_size)
        self.patch_embed = nnx.Conv(channels, dim, (patch_size, patch_size),
                                    strides=patch_size, padding="VALID", rngs=rngs)
        self.position = nnx.Param(
            nnx.initializers.normal(0.02)(rngs.params(), (1, num_patches, dim), jnp.float32))
        self.blocks = nnx.List(
            [_EncoderBlock(dim, num_heads, mlp_dim, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, H, W, C) images -> (B, num_classes) logits."""
        x = self.patch_embed(x)
        x = x.reshape(x.shape[0], -1, x.shape[-1]) + self.position[...]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x.mean(axis=1)))


MODELS: dict[str, type[nnx.Module]] = {"lenet5": LeNet5, "repvgg": RepVGG, "vit": ViT}


def make_model(name: str, image_shape: Sequence[int], num_classes: int, *, seed: int = 0,
               **kwargs) -> nnx.Module:
    """Builds the model ``name`` (a key of :data:`MODELS`) with parameters drawn from ``seed``.

    ``kwargs`` go to the model's constructor (e.g. ``widths=`` for RepVGG, ``depth=`` for ViT).
    ``image_shape`` is (H, W, C) and ``num_classes`` an int >= 1, ``seed`` an int >= 0.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {sorted(MODELS)}.")
    seed = check.check_count(seed, "seed")
    accepted = [p for p in inspect.signature(MODELS[name].__init__).parameters
                if p not in ("self", "image_shape", "num_classes", "rngs")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"{name} takes no argument {', '.join(unknown)}; its arguments are "
                        f"{', '.join(accepted) or 'none'}.")
    return MODELS[name](image_shape, num_classes, rngs=nnx.Rngs(seed), **kwargs)


def pure_apply(model: nnx.Module,
               image_shape: Sequence[int] | None = None) -> Callable[[jax.Array], jax.Array]:
    """The model as a pure function of ONE input: f(x) -> (num_classes,) logits.

    ``x`` is either a flat vector of shape (d,), d = H * W * C, read as an (H, W, C) image
    in C order (``image.reshape(-1)``), or the image itself of shape (H, W, C). The coding
    library passes flat vectors (coded inputs are linear combinations of flattened images).

    f is a snapshot: it holds a copy of the current parameters and running statistics, with
    BatchNorm using its running statistics (inference mode), so later training of ``model``
    does not change it. It does not jit itself; it composes with ``jax.jit`` and ``jax.vmap``
    (vmap it for a batch: inference-mode BatchNorm does not mix examples). Computation runs
    in the dtype of a floating ``x`` (the float32 parameters are cast to it), else in
    float32.

    Args:
        model: a model mapping (B, H, W, C) to (B, num_classes).
        image_shape: (H, W, C); defaults to ``model.image_shape`` (and must equal it where
          the model has one).

    Returns:
        f: (d,) or (H, W, C) array -> (num_classes,) array.
    """
    built_for = getattr(model, "image_shape", None)
    if image_shape is None:
        if built_for is None:
            raise ValueError(
                f"{type(model).__name__} has no image_shape attribute; pass image_shape=(H, W, C)."
            )
        image_shape = built_for
    image_shape = _check_image_shape(image_shape)
    if built_for is not None and image_shape != tuple(built_for):
        raise ValueError(
            f"image_shape={image_shape} does not match the {type(model).__name__}, built for "
            f"images of shape {tuple(built_for)}; omit image_shape, or build the model for "
            f"{image_shape}."
        )
    d = math.prod(image_shape)
    inference = nnx.view(model, use_running_average=True, deterministic=True,
                         raise_if_not_found=False)
    graphdef, state = nnx.split(inference)
    state = jax.tree.map(jnp.copy, state)

    def f(x: jax.Array) -> jax.Array:
        try:
            x = jnp.asarray(x)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"f takes one numeric array of shape ({d},) or {image_shape}, got "
                f"{type(x).__name__} ({exc})."
            ) from exc
        if x.shape not in ((d,), image_shape):
            raise ValueError(
                f"f takes one input of shape ({d},) or {image_shape}, got {x.shape}; "
                "use jax.vmap(f) for a batch."
            )
        # The dtype follows x: the (float32) parameters are cast to a floating x's dtype.
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        params = jax.tree.map(
            lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, state)
        return nnx.merge(graphdef, params)(x.astype(dtype).reshape((1, *image_shape)))[0]

    return f
