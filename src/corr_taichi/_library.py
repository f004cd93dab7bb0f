"""The package's ops in ``torch.library``: one ``corr_taichi`` namespace, each op defined from its Python
signature, implemented for every device, with a fake (meta) implementation and an autograd formula.

:func:`custom_op` is ``torch.library.custom_op`` without its dispatch wrapper: that wrapper keeps
``torch.compile`` from tracing into an op's implementation, and imports ``torch._dynamo`` (1.7 s on the
development machine, more than the rest of a first call) at the first call of any op it wraps.  These
ops' implementations are opaque to ``torch.compile`` anyway (it sees the op and its fake implementation),
so an inference script that never compiles does not pay that import here.
"""

from __future__ import annotations

from typing import Callable

import torch

_NAMESPACE = "corr_taichi"
_LIB = torch.library.Library(_NAMESPACE, "DEF")


class CustomOp:
    """An op of the ``corr_taichi`` namespace; calling it calls the registered op (``torch.ops.corr_taichi.<name>``)."""

    def __init__(self, name: str, implementation: Callable) -> None:
        self.name = name
        self.qualname = f"{_NAMESPACE}::{name}"
        _LIB.define(name + torch.library.infer_schema(implementation, mutates_args=()))
        _LIB.impl(name, implementation, "CompositeExplicitAutograd")
        self.default = getattr(getattr(torch.ops, _NAMESPACE), name).default
        self.__doc__ = implementation.__doc__

    def __call__(self, *args):
        return self.default(*args)

    def register_fake(self, fake: Callable) -> Callable:
        """Decorator: the op's implementation for fake and meta tensors (shapes, dtypes, strides only)."""
        torch.library.register_fake(self.qualname, fake, lib=_LIB)
        return fake

    def register_autograd(self, backward: Callable, setup_context: Callable) -> None:
        """The op's gradient formula, as ``torch.library.register_autograd`` takes it."""
        torch.library.register_autograd(self.qualname, backward, setup_context=setup_context, lib=_LIB)

    def not_differentiable(self) -> None:
        """Make a backward through this op (a gradient op, so a double backward) an error, not a silent zero."""

        def refuse(ctx, *grads):
            raise RuntimeError(f"{self.qualname} has no gradient formula: double backward through the "
                               "correlation ops is not supported")

        torch.library.register_autograd(self.qualname, refuse, setup_context=lambda ctx, inputs, output: None,
                                        lib=_LIB)


def reference_vjp(function: Callable, primals: tuple, cotangent: torch.Tensor) -> tuple:
    """The gradients of ``function(*primals)`` (a tensor) for the output gradient ``cotangent``, one per
    primal: how a gradient op's implementation differentiates the pure-PyTorch computation (its path
    where Taichi cannot run).  ``torch.autograd.grad`` would see nothing to differentiate there: a
    gradient op runs below the autograd dispatch key, so the operations inside it are not recorded;
    ``torch.func.vjp`` traces them with its own transform."""
    with torch.enable_grad():
        out, vjp = torch.func.vjp(function, *primals)
        return vjp(cotangent.to(out.dtype))


def custom_op(qualname: str) -> Callable[[Callable], CustomOp]:
    """Decorator: define the function's signature as the op ``qualname`` (``"corr_taichi::<name>"``, no
    mutated arguments) with the function as its implementation on every device."""
    namespace, name = qualname.split("::")
    if namespace != _NAMESPACE:
        raise ValueError(f"qualname must be in the {_NAMESPACE} namespace, got {qualname!r}")
    return lambda implementation: CustomOp(name, implementation)
