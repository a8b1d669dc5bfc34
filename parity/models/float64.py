"""The float64 twin of a user's NNX model, to compare against ``torch_model.double()``.

Casting the state alone (``nnx.update(m, jax.tree.map(to_f64, nnx.state(m)))``) is not enough:
modules keep a ``dtype`` / ``param_dtype`` attribute that decides what they compute in and
create (``nnx.RNN`` draws its carry in the cell's ``param_dtype``: a float32 carry against
float64 steps stops ``nnx.scan``; ``nnx.Embed`` and ``nnx.MultiHeadAttention`` promote to their
``dtype``). And ``nnx.MultiHeadAttention``'s default ``attention_fn`` (``nnx.dot_product_attention``
without dropout) calls ``jax.nn.dot_product_attention``, which computes its softmax in float32
even for float64 inputs: about 2e-7 off, far outside float64's tolerance (and enough for Adam
to blow a near-zero key-bias gradient apart at the first step). :func:`to_float64` does all three:
state, attributes, and :func:`exact_attention` as the attention function.

>>> import jax.numpy as jnp
>>> from flax import nnx
>>> m = to_float64(nnx.RNN(nnx.LSTMCell(2, 3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0)))
>>> m(jnp.ones((1, 4, 2), jnp.float64)).dtype
dtype('float64')
"""

from __future__ import annotations

from typing import Any

__all__ = ["exact_attention", "to_float64"]


def exact_attention(query: Any, key: Any, value: Any, bias: Any = None, mask: Any = None, **kw: Any) -> Any:
    """``nnx.dot_product_attention`` computed in the inputs' dtype throughout (softmax included):
    ``softmax(q k^T / sqrt(head_dim) + bias, masked) v``, shapes ``(..., length, heads, head_dim)``.
    A drop-in ``attention_fn`` for ``nnx.MultiHeadAttention``.

    >>> import jax.numpy as jnp
    >>> q = jnp.ones((1, 3, 2, 4), jnp.float64)
    >>> exact_attention(q, q, q).dtype, exact_attention(q, q, q).shape
    (dtype('float64'), (1, 3, 2, 4))
    """
    import jax.numpy as jnp
    from flax.nnx.nn.attention import dot_product_attention_weights

    kw.pop("module", None)
    w = dot_product_attention_weights(query, key, bias, mask, **kw)
    return jnp.einsum("...hqk,...khd->...qhd", w, value, precision=kw.get("precision"))


def to_float64(model: Any) -> Any:
    """A float64 copy of an NNX model: every floating variable cast, every module's ``dtype`` /
    ``param_dtype`` set to float64, attention's default ``attention_fn`` replaced by
    :func:`exact_attention` (see the module docstring). ``model`` is not changed.

    >>> import numpy as np
    >>> from flax import nnx
    >>> from jaxloss import parity
    >>> m = parity.to_float64(nnx.Embed(5, 3, rngs=nnx.Rngs(0)))
    >>> m.embedding[...].dtype, m(np.array([1, 2])).dtype
    (dtype('float64'), dtype('float64'))
    >>> abstract = parity.to_float64(nnx.eval_shape(lambda: nnx.Linear(2, 3, rngs=nnx.Rngs(0))))
    >>> abstract.kernel.get_raw_value()  # no initialiser ran: load_torch_weights fills it
    ShapeDtypeStruct(shape=(2, 3), dtype=float64)
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    m = nnx.clone(model)
    for _, mod in nnx.iter_modules(m):
        for attr in ("dtype", "param_dtype"):
            v = getattr(mod, attr, None)
            if v is not None and jnp.issubdtype(v, jnp.floating):
                setattr(mod, attr, jnp.float64)
        if isinstance(mod, nnx.MultiHeadAttention) and mod.attention_fn is nnx.dot_product_attention:
            mod.attention_fn = exact_attention
    def cast(a: Any) -> Any:
        if not (hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)):
            return a
        if isinstance(a, jax.ShapeDtypeStruct):  # an nnx.eval_shape model: cast first, load_torch_weights after
            return jax.ShapeDtypeStruct(a.shape, jnp.float64, sharding=a.sharding)
        return a.astype(jnp.float64)

    nnx.update(m, jax.tree.map(cast, nnx.state(m)))
    return m
