"""A pretend GPU on a CPU-only machine: catch tensors a chapter would mix across devices on a real GPU.

On a CPU every tensor lives on the one device, so a chapter that builds ``torch.arange(T)`` on the CPU
for a model on ``cuda`` runs fine in CI and fails on Colab's GPU. :func:`install` makes
``torch.cuda.is_available()`` true and runs everything on the CPU, but remembers, for each tensor, whether
it *would* be on the GPU: a tensor made with ``device="cuda"`` (or moved there with ``.to``/``.cuda``, or a
module moved there) carries a mark, results of an operation inherit it, and an operation whose tensor
arguments (or ``generator=``) would sit on different devices raises the ``RuntimeError`` PyTorch raises
on a GPU. What the real device allows stays allowed: CPU scalars (0-dim tensors) beside GPU tensors,
``copy_``, indexing a GPU tensor with CPU indices. ``.numpy()`` of a GPU tensor fails, as it does there.
``tensor.device`` and ``generator.device`` report ``cuda:0`` for marked objects, so code that asks
("``device=idx.device``") is followed faithfully.

Used by ``tests/test_gpu_path.py``, which runs every chapter's ``SCALE = "gpu"`` branch with it installed
in the kernel. By hand, in a notebook's first cell::

    import sys; sys.path.insert(0, "../tests"); import _pretend_device; _pretend_device.install()
"""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

GPU = torch.device("cuda", 0)
_MARK = "_pretend_gpu"
_CPU_OK = {"copy_", "__getitem__", "__setitem__", "index_put_", "to", "cpu", "cuda", "__repr__", "__format__",
           "__str__", "tolist", "item", "__bool__", "__len__", "__iter__", "numel", "size", "dim", "__reduce_ex__",
           "storage", "untyped_storage", "data_ptr", "is_pinned", "pin_memory"}


def _is_gpu(device) -> bool | None:
    """True for a CUDA device, False for another device, None when ``device`` names none."""
    if device is None:
        return None
    if isinstance(device, int) and not isinstance(device, bool):
        return True
    if isinstance(device, (str, torch.device)):
        return torch.device(device).type == "cuda"
    return None


def marked(obj) -> bool:
    """Whether ``obj`` (a tensor or generator) would be on the GPU."""
    return bool(getattr(obj, _MARK, False))


def _mark(obj, on_gpu: bool):
    if isinstance(obj, torch.Tensor):
        try:
            setattr(obj, _MARK, on_gpu)
        except (AttributeError, RuntimeError):  # e.g. a tensor subclass without a __dict__
            pass
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            _mark(item, on_gpu)
    return obj


def _tensors(value, out: list) -> list:
    if isinstance(value, torch.Tensor):
        out.append(value)
    elif isinstance(value, (tuple, list)):
        for item in value:
            _tensors(item, out)
    elif isinstance(value, dict):
        for item in value.values():
            _tensors(item, out)
    return out


def _cpu(value):
    """``value`` with a CUDA device argument replaced by the CPU."""
    return "cpu" if _is_gpu(value) else value


class PretendGPU(TorchFunctionMode):
    """The torch-function mode behind :func:`install`."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        owner = getattr(func, "__self__", None)
        if name in ("__get__", "__set__") and owner is not None and getattr(owner, "__name__", "") == "device":
            if name == "__get__" and marked(args[0]):
                return GPU
            return func(*args, **kwargs)
        if name == "pin_memory":  # needs a CUDA build; a no-op here
            return args[0]
        if name in ("numpy", "__array__") and args and marked(args[0]):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
                            "tensor to host memory first.")
        if name in ("to", "cuda", "cpu") and args and isinstance(args[0], torch.Tensor):
            return self._move(func, name, args, kwargs)

        target = _is_gpu(kwargs.get("device"))
        if "device" in kwargs:
            kwargs["device"] = _cpu(kwargs["device"])
        generator = kwargs.get("generator")
        tensors = _tensors(args, []) + _tensors(kwargs, [])
        if name not in _CPU_OK:
            self._check(name, tensors, generator, target)
        result = func(*args, **kwargs)
        if name.endswith("_") and not name.endswith("__") and args and isinstance(args[0], torch.Tensor):
            return result  # in place: the result is the first argument, where it was
        on_gpu = target if target is not None else any(marked(t) for t in tensors)
        if on_gpu or (target is False and any(marked(t) for t in tensors)):
            _mark(result, bool(on_gpu))
        return result

    @staticmethod
    def _check(name, tensors, generator, target) -> None:
        sides = set()
        for t in tensors:
            if t.device.type != "cpu" and not marked(t):  # meta tensors: not ours to judge
                continue
            if marked(t) or t.dim() > 0:  # a CPU scalar may join GPU tensors
                sides.add(marked(t))
        if generator is not None:
            want = marked(generator)
            has = sides or ({target} if target is not None else {False})
            if has != {want}:
                raise RuntimeError(f"{name}: expected a '{'cuda' if has == {True} else 'cpu'}' device type for "
                                   f"generator but found '{'cuda' if want else 'cpu'}' (pretend GPU)")
        if len(sides) > 1:
            raise RuntimeError(f"{name}: Expected all tensors to be on the same device, but found at least two "
                               "devices, cuda:0 and cpu! (pretend GPU)")

    @staticmethod
    def _move(func, name, args, kwargs):
        t = args[0]
        if name == "cuda":
            target = True
            args, kwargs = (t,), {k: v for k, v in kwargs.items() if k != "device"}
            func = torch.Tensor.to
        elif name == "cpu":
            target = False
        else:
            target = _is_gpu(kwargs.get("device"))
            if "device" in kwargs:
                kwargs["device"] = _cpu(kwargs["device"])
            rest = list(args[1:])
            if rest and isinstance(rest[0], torch.Tensor):
                target = marked(rest[0])
                rest[0] = rest[0].dtype
            elif rest and _is_gpu(rest[0]) is not None:
                target = _is_gpu(rest[0])
                rest[0] = _cpu(rest[0])
            args = (t, *rest)
        out = func(*args, **kwargs)
        if target is None:
            target = marked(t)
        if target != marked(t) and out is t:
            out = t.clone()  # a real move makes a new tensor; the original stays where it was
        return _mark(out, target)


def _pretend_module_move(original):
    def to(self, *args, **kwargs):
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is None:
            return original(self, *args, **kwargs)
        if dtype is not None:
            original(self, dtype)
        for t in list(self.parameters()) + list(self.buffers()):
            _mark(t, device.type == "cuda")
        return self
    return to


class PretendGenerator(torch.Generator):
    """``torch.Generator(device="cuda")`` on the CPU, reporting ``cuda:0`` as its device."""

    def __new__(cls, device="cpu"):
        gen = super().__new__(cls, "cpu")
        setattr(gen, _MARK, _is_gpu(device) or False)
        return gen

    @property
    def device(self):
        return GPU if marked(self) else torch.device("cpu")


_INSTALLED: list = []


def install() -> None:
    """Pretend a GPU for the rest of this process (a notebook kernel): see the module docstring."""
    if _INSTALLED:
        return
    cuda = torch.cuda
    cuda.is_available = lambda: True
    cuda.device_count = lambda: 1
    cuda.current_device = lambda: 0
    cuda.get_device_name = lambda device=None: "pretend GPU (CPU)"
    cuda.get_device_capability = lambda device=None: (8, 0)
    cuda.is_bf16_supported = lambda *a, **k: True
    cuda.synchronize = lambda device=None: None
    cuda.set_device = lambda device: None
    cuda.manual_seed = cuda.manual_seed_all = lambda seed: None
    cuda.get_rng_state_all = lambda: []
    cuda.set_rng_state_all = lambda states: None
    cuda.empty_cache = lambda: None
    cuda.is_current_stream_capturing = lambda: False  # asked by optimizers when CUDA is available
    cuda.reset_peak_memory_stats = lambda device=None: None
    cuda.max_memory_allocated = cuda.memory_allocated = lambda device=None: 0
    cuda.get_rng_state = lambda device="cuda": torch.get_rng_state()
    cuda.set_rng_state = lambda state, device="cuda": None
    torch.nn.Module.to = _pretend_module_move(torch.nn.Module.to)
    torch.nn.Module.cuda = lambda self, device=None: self.to("cuda")
    torch.nn.Module.cpu = lambda self: self.to("cpu")
    torch.Generator = PretendGenerator
    mode = PretendGPU()
    mode.__enter__()
    _INSTALLED.append(mode)
