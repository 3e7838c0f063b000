r"""Registration of the ops with :mod:`torch.library`.

Every op of this package is a custom operator ``torch.ops.videograph.<name>``
(:func:`torch.library.custom_op`) with a fake kernel (shapes only, for
:class:`~torch._subclasses.FakeTensor` and the ``meta`` device) and a
registered autograd formula, as torchvision registers ``torchvision::roi_align``.
:func:`torch.compile`, :func:`torch.export` and
:func:`torch.library.opcheck` see them as single operators.

In plain eager mode a custom operator costs tens of microseconds per call in
the Python dispatcher (measured on one CPU thread: 13 us for ``x + 1``, 19 us
through an :class:`torch.autograd.Function`, 71 us through a custom op with
autograd), a lot next to small scatters. So :class:`Op` calls the same
kernel, setup and backward functions through an
:class:`~torch.autograd.Function` there, and through the registered operator
whenever the call is traced (compiling, a dispatch mode such as
``make_fx``'s, tensor subclasses such as fake tensors, or ``meta`` tensors).
"""
from typing import Any, Callable, Sequence

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

_PLAIN = (Tensor, torch.nn.Parameter)


def is_traced(tensors: Sequence[Tensor]) -> bool:
    r"""Whether a call on :obj:`tensors` is being traced rather than run
    eagerly on ordinary tensors (``meta`` tensors count as traced: only
    shapes exist there)."""
    return (torch.compiler.is_compiling()
            or _get_current_dispatch_mode() is not None
            or any(type(t) not in _PLAIN or t.is_meta for t in tensors))


class Op:
    r"""One operator ``videograph::<name>``.

    Args:
        name (str): The operator's name in the ``videograph`` namespace.
        kernel (callable): The implementation, with type annotations (they
            give the schema); it must not return a view of an input.
        fake (callable): Same arguments, returns an empty tensor of the
            output's shape, dtype and device.
        setup_context (callable): ``(ctx, inputs, output)``, saves what
            :obj:`backward` needs.
        backward (callable): ``(ctx, grad_out)``, one gradient (or
            :obj:`None`) per input; made of differentiable operations
            (possibly other :class:`Op` calls), so higher derivatives work.
    """
    def __init__(self, name: str, kernel: Callable, fake: Callable,
                 setup_context: Callable, backward: Callable) -> None:
        self.name = name
        self.op = torch.library.custom_op(f'videograph::{name}', kernel,
                                          mutates_args=())
        self.op.register_fake(fake)
        self.op.register_autograd(backward, setup_context=setup_context)

        def forward(ctx: Any, *inputs: Any) -> Tensor:
            output = kernel(*inputs)
            setup_context(ctx, inputs, output)
            return output

        self.function = type(f'{name}_function', (torch.autograd.Function, ),
                             dict(forward=staticmethod(forward),
                                  backward=staticmethod(backward)))

    def __call__(self, *args: Any) -> Tensor:
        if is_traced([a for a in args if isinstance(a, Tensor)]):
            return getattr(torch.ops.videograph, self.name)(*args)
        return self.function.apply(*args)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(videograph::{self.name})'
