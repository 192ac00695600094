"""a x + b y in the compute dtype, stored in x's dtype: every closed form's last line.

Eagerly it is two torch operations. While torch.compile traces it is the custom op
``noisejump::affine``, opaque to the compiler: inductor would contract the multiply and the
add into a fused multiply-add, which rounds once instead of twice, so compiled x_t would
differ from eager x_t in the last bit. Through the op the compiled values are the eager
ones, bitwise (the price: the compiler does not fuse this pass with its neighbours).
"""

# No "from __future__ import annotations": torch.library reads the op's annotations as types.
import torch

__all__ = ["affine", "compute_dtype"]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half, bfloat16 and float32 samples; float64 for float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def affine(a: torch.Tensor, x: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """a x + b y computed in x's compute dtype, returned in x's dtype (a, b broadcast)."""
    if torch.compiler.is_compiling():
        return _affine_op(a, x, b, y)
    return _affine(a, x, b, y)


def _affine(a: torch.Tensor, x: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    cd = compute_dtype(x.dtype)
    return torch.addcmul(a * x.to(cd), b, y.to(cd)).to(x.dtype)


@torch.library.custom_op("noisejump::affine", mutates_args=())
def _affine_op(a: torch.Tensor, x: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _affine(a, x, b, y)


@_affine_op.register_fake
def _(a, x, b, y):
    shape = torch.broadcast_shapes(a.shape, x.shape, b.shape, y.shape)
    return x.new_empty(shape)


def _setup_context(ctx, inputs, output):
    a, x, b, y = inputs
    ctx.save_for_backward(a, x, b, y)


def _backward(ctx, grad):
    """d/dx = a, d/dy = b, d/da = x, d/db = y, each summed to its input's shape."""
    a, x, b, y = ctx.saved_tensors
    cd = compute_dtype(x.dtype)
    g = grad.to(cd)
    wanted = ctx.needs_input_grad

    def reduce(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return value.sum_to_size(like.shape).to(like.dtype)

    return (
        reduce(g * x.to(cd), a) if wanted[0] else None,
        reduce(g * a.to(cd), x) if wanted[1] else None,
        reduce(g * y.to(cd), b) if wanted[2] else None,
        reduce(g * b.to(cd), y) if wanted[3] else None,
    )


_affine_op.register_autograd(_backward, setup_context=_setup_context)
