"""The one owner of the Taichi runtime.

Rules:
* the Taichi implementation is upstream ``taichi`` or its maintained fork ``quadrants``: the one
  ``CORR_TAICHI_BACKEND`` names, else one the user imported, else the first installed (:func:`_import_taichi`);
  everything else in the package reaches it as ``ti`` from here;
* a runtime the user initialised (``ti.init(...)`` before the first call) is used as it is;
* otherwise one is started lazily at the first call, on the backend matching the tensors' device
  (cpu -> Taichi's CPU backend, cuda -> Taichi's CUDA backend), or on the backend named by
  :func:`init` or the ``CORR_TAICHI_ARCH`` environment variable;
* starting it prints nothing (Taichi's banner and start-up line are swallowed);
* on request (``init(..., pin_threads=True)`` or ``CORR_TAICHI_PIN_THREADS=1``), Taichi's CPU worker
  threads are pinned one per CPU of the process's affinity set (Linux);
* any number of Python threads may call the layer: what Taichi cannot do concurrently (start the
  runtime, compile a kernel on its first call, launch one, synchronise) holds :data:`LOCK`, one
  reentrant lock, and nothing else does, so the torch work around the launches runs in parallel.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import linecache
import os
import sys
import textwrap
import threading
import types
import warnings

import numpy as np
import torch

#: Held for everything Taichi's front end and runtime cannot do from two threads at once: starting the
#: runtime, and each kernel call (which compiles the kernel on its first call with new template
#: arguments, then launches it).  A forked child gets a fresh one (see :func:`_after_fork_in_child`), so
#: the names below look it up at each use.
LOCK = threading.RLock()


#: The Taichi implementations the layer runs on, by import name: upstream Taichi (the default
#: dependency) and ``quadrants``, the Genesis project's maintained fork (``pip install corr-taichi[quadrants]``).
BACKENDS = ("taichi", "quadrants")
#: The environment variable that names one of :data:`BACKENDS`.
BACKEND_VARIABLE = "CORR_TAICHI_BACKEND"
_BANNER_VARIABLES = {"taichi": "ENABLE_TAICHI_HEADER_PRINT", "quadrants": "ENABLE_QUADRANTS_HEADER_PRINT"}


def _requested_backend() -> str | None:
    """The backend that ``CORR_TAICHI_BACKEND`` names, or None where it is unset."""
    name = os.environ.get(BACKEND_VARIABLE, "").strip().lower()
    if name and name not in BACKENDS:
        raise ValueError(f"{BACKEND_VARIABLE} must be one of {', '.join(BACKENDS)}, got {name!r}")
    return name or None


def _quiet_import(name: str):
    """Import ``name`` without its start-up banner."""
    variable = _BANNER_VARIABLES[name]
    previous = os.environ.get(variable)
    os.environ[variable] = "0"
    try:
        with warnings.catch_warnings():  # taichi 1.7 calls a deprecated locale function at import
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module(name)
    finally:
        if previous is None:
            del os.environ[variable]
        else:
            os.environ[variable] = previous


def _started(module) -> bool:
    """Whether ``module``'s runtime has been started (quadrants' ``prog`` raises before that; both keep the
    program in ``_prog``)."""
    runtime = module.lang.impl.get_runtime()
    return (runtime._prog if hasattr(runtime, "_prog") else runtime.prog) is not None


def _import_taichi():
    """The Taichi implementation to run on: the one ``CORR_TAICHI_BACKEND`` names; else one the user has
    already imported (the one whose runtime they started, where both are); else the first of
    :data:`BACKENDS` that is installed.  Imported without its banner."""
    requested = _requested_backend()
    imported = [name for name in BACKENDS if name in sys.modules]
    if requested is None and imported:
        started = [name for name in imported if _started(sys.modules[name])]
        return sys.modules[(started or imported)[0]]
    for name in (requested,) if requested else BACKENDS:
        if name in sys.modules:
            return sys.modules[name]
        try:
            return _quiet_import(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
    if requested:
        raise ImportError(f"{BACKEND_VARIABLE}={requested}, but {requested} is not installed "
                          f"(pip install corr-taichi[{requested}])")
    raise ImportError("corr_taichi needs taichi or quadrants: pip install taichi")


ti = _import_taichi()
#: ``"taichi"`` or ``"quadrants"``: the implementation the layer runs on.
BACKEND = ti.__name__

_CPU_ARCHS = (ti.x64, ti.arm64)
#: the backends :func:`init` takes, less those the implementation lacks (quadrants has no opengl)
_ARCH_NAMES = tuple(name for name in ("cpu", "cuda", "vulkan", "metal", "opengl", "gpu") if hasattr(ti, name))

#: the Taichi scalar type of each torch dtype the kernels compute in.
#: Taichi 1.7 indexes ndarrays with 32-bit ints: no tensor a kernel reads or writes may hold more elements.
MAX_ELEMENTS = 2**31 - 1

TAICHI_DTYPES = {torch.float32: ti.f32, torch.float64: ti.f64}


#: the CPU compile options of every kernel of this package (see :class:`locked`)
KERNEL_OPTIONS = (("real_matrix_scalarize", False),)
#: the compile options of :meth:`locked.quick_compile`: Taichi 1.7's ``advanced_optimization`` runs its own
#: simplification passes (common subexpressions, store forwarding, loop invariants...) to a fixed point
#: before LLVM's, and on the largest unrolled kernels here that loop took most of a first compile (the row
#: path's ``grad_input1`` of PWC level 2: 3.5 s against 0.8 s without it).  Set for the kernels whose speed
#: it did not cost, per kernel, in alternating launches (``docs/runtime.md``, "Fourth round").
QUICK_COMPILE = (("advanced_optimization", False),)


class locked:
    """A Taichi kernel whose every call holds :data:`LOCK`.  Stack it on ``@ti.kernel`` (which inspects
    its caller's frame, so it must stay the decorator applied first)::

        @locked
        @ti.kernel
        def add(x: ti.types.ndarray(), y: ti.types.ndarray()): ...

    Attribute look-ups reach the Taichi kernel itself.

    On a CPU runtime the user started with Taichi's default ``real_matrix_scalarize=True``, the call
    switches that compile option off while it runs (and back on after): the CPU kernels compute on
    matrices of 16 lanes, which LLVM only receives as vectors unscalarised, and scalarised they compile
    for minutes (FlowNetC's forward: 149 s against 4 s) and run about twice as slowly.  The user's own
    kernels compile with the user's setting.

    ``@locked.quick_compile`` marks a kernel that compiles on taichi's CPU backends without Taichi's own
    IR optimisation loop (:data:`QUICK_COMPILE`; LLVM still optimises it): set for the call, like the
    option above, and put back after."""

    __slots__ = ("kernel", "options")

    def __init__(self, kernel, options: tuple[tuple[str, bool], ...] = KERNEL_OPTIONS) -> None:
        self.kernel = kernel
        self.options = options  # the CPU compile options of this kernel's calls: (name, value) pairs

    @classmethod
    def quick_compile(cls, kernel) -> locked:
        """:class:`locked`, and on taichi's CPU backends also :data:`QUICK_COMPILE`."""
        return cls(kernel, KERNEL_OPTIONS + (QUICK_COMPILE if BACKEND == "taichi" else ()))

    def __call__(self, *args):
        with LOCK, _lean_front_end():
            cfg = ti.lang.impl.current_cfg()
            changes = [] if cfg.arch not in _CPU_ARCHS else [
                (name, value, before) for name, value in self.options if (before := getattr(cfg, name)) != value]
            if not changes:
                return self.kernel(*args)
            for name, value, _ in changes:
                setattr(cfg, name, value)
            try:
                return self.kernel(*args)
            finally:
                for name, _, before in changes:
                    setattr(cfg, name, before)

    def __getattr__(self, name: str):
        return getattr(self.kernel, name)


def _file_and_line(ctx, node) -> str:
    """Where an AST node of a kernel being compiled is, for Taichi's error messages: file and line."""
    return f'File "{ctx.file}", line {node.lineno + ctx.lineno_offset}, in {ctx.func.func.__name__}:\n'


def _front_end_modules():
    """Taichi 1.7's AST transformer context class, kernel module and expression module, whose per-node
    source excerpts, per-call source reads and per-constant range checks this package's kernels compile
    without (see :func:`_lean_front_end`); None for another implementation (quadrants memoises its
    excerpts per function)."""
    if BACKEND != "taichi":
        return None
    try:
        context = importlib.import_module("taichi.lang.ast.ast_transformer_utils").ASTTransformerContext
        kernel_impl = importlib.import_module("taichi.lang.kernel_impl")
        expr = importlib.import_module("taichi.lang.expr")
    except (ImportError, AttributeError):
        return None
    if not all(callable(getattr(owner, name, None)) for owner, name in
               ((context, "get_pos_info"), (kernel_impl, "getsourcelines"), (kernel_impl, "getsourcefile"),
                (expr, "_check_in_range"), (expr, "_clamp_unsigned_to_range"))):
        return None
    if getattr(kernel_impl, "textwrap", None) is not textwrap or getattr(expr, "np", None) is not np:
        return None
    if not callable(getattr(kernel_impl, "_inside_class", None)):
        return None
    if not isinstance(getattr(kernel_impl, "_KERNEL_CLASS_STACKFRAME_STMT_RES", None), list):
        return None
    return context, kernel_impl, expr


_FRONT_END = _front_end_modules()


def _inside_class_quickly(level_of_class_stackframe: int) -> bool:
    """Taichi 1.7's ``kernel_impl._inside_class`` (whether a decorated function's statement is in a class
    body), reading the statement with ``linecache`` instead of ``inspect.getframeinfo``, which scans every
    module in ``sys.modules`` (over a thousand with torch) at each decoration."""
    try:
        frame = sys._getframe(level_of_class_stackframe)  # it takes the place of Taichi's: the same depth
    except ValueError:
        return False
    statement = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    return any(pattern.match(statement) for pattern in _FRONT_END[1]._KERNEL_CLASS_STACKFRAME_STMT_RES)


def _import_matrix_ops() -> None:
    """Import ``taichi.lang.matrix_ops`` now, with :func:`_inside_class_quickly`: Taichi's front end imports
    it when it compiles its first kernel that calls a built-in, and the 51 Taichi functions it decorates
    took about 50 ms there, in the first call of this package's kernels."""
    kernel_impl = _FRONT_END[1]
    full = kernel_impl._inside_class
    kernel_impl._inside_class = _inside_class_quickly
    try:
        importlib.import_module("taichi.lang.matrix_ops")
    finally:
        kernel_impl._inside_class = full


@functools.lru_cache(maxsize=None)
def _integer_range(numpy_type) -> tuple[int, int, int]:
    info = np.iinfo(numpy_type)
    return int(info.min), int(info.max), info.bits


def _check_in_range(numpy_type, value) -> bool:
    """Taichi 1.7's ``expr._check_in_range`` (whether an integer literal fits ``numpy_type``), with the
    type's range looked up once: ``np.iinfo`` ran twice for every integer constant of a kernel."""
    low, high, _ = _integer_range(numpy_type)
    return low <= value <= high


def _clamp_unsigned_to_range(numpy_type, value):
    """Taichi 1.7's ``expr._clamp_unsigned_to_range``: ``value`` where it fits ``numpy_type``, else (an
    unsigned literal) its two's-complement reading."""
    if _check_in_range(numpy_type, value):
        return value
    cap = 1 << _integer_range(numpy_type)[2]
    assert 0 <= value < cap
    return value - cap


def _lean_filled(matrix_ops):
    """Stand-ins for Taichi 1.7's ``matrix_ops._filled_vector`` and ``_filled_matrix`` (behind
    ``ti.Vector.zero`` and ``ti.Matrix.zero``): the same matrix expression, built by the function Taichi's
    front end calls for a ``ti.Vector(...)`` or ``ti.Matrix(...)`` written in a kernel.  Taichi's are
    Taichi functions, whose list comprehensions the front end transformed entry by entry at every call
    (a fifth of the row path's backward front end).  They present as Taichi's (``functools.wraps``),
    which is what keeps its front end from treating a call of them as a foreign function."""
    make_matrix = importlib.import_module("taichi.lang.matrix").make_matrix  # what Taichi calls for a ti.Vector(...)

    @functools.wraps(matrix_ops._filled_vector)
    def filled_vector(n, dtype, value):
        return make_matrix([value for _ in range(n)], dtype)

    @functools.wraps(matrix_ops._filled_matrix)
    def filled_matrix(n, m, dtype, value):
        return make_matrix([[value for _ in range(m)] for _ in range(n)], dtype)

    return filled_vector, filled_matrix


def _front_end_swaps() -> list[tuple[object, str, object, object]]:
    """``(owner, name, Taichi's, lean)``: what :func:`_lean_front_end` puts in place."""
    context, kernel_impl, expr = _FRONT_END
    lean = {
        (context, "get_pos_info"): _file_and_line,
        # the source of this package's Taichi functions, read and normalised once per process (each
        # inlined call of a ``ti.func`` read its file again, and re-wrapped each line: about a third of
        # the front end)
        (kernel_impl, "getsourcelines"): functools.lru_cache(maxsize=None)(kernel_impl.getsourcelines),
        (kernel_impl, "getsourcefile"): functools.lru_cache(maxsize=None)(kernel_impl.getsourcefile),
        (kernel_impl, "textwrap"): types.SimpleNamespace(fill=functools.lru_cache(maxsize=None)(textwrap.fill),
                                                         dedent=functools.lru_cache(maxsize=None)(textwrap.dedent)),
        (expr, "_check_in_range"): _check_in_range,
        (expr, "_clamp_unsigned_to_range"): _clamp_unsigned_to_range,
    }
    matrix_ops = importlib.import_module("taichi.lang.matrix_ops")
    if all(callable(getattr(matrix_ops, name, None)) for name in ("_filled_vector", "_filled_matrix")):
        lean[matrix_ops, "_filled_vector"], lean[matrix_ops, "_filled_matrix"] = _lean_filled(matrix_ops)
    return [(owner, name, getattr(owner, name), value) for (owner, name), value in lean.items()]


if _FRONT_END is not None:
    _import_matrix_ops()
    _SWAPS = _front_end_swaps()


def _set_front_end(lean: bool) -> None:
    for owner, name, full, lean_value in _SWAPS:
        setattr(owner, name, lean_value if lean else full)


@contextlib.contextmanager
def _lean_front_end():
    """While this package's kernels compile (under :data:`LOCK`), Taichi 1.7's Python front end runs
    without costs that are most of a first call with a warm offline cache (:func:`_front_end_swaps`):

    * for every AST node it visits, it formats an excerpt of the source with the node underlined (text
      wrapping included), kept for error messages: about 45 % of its time on these unrolled kernels;
      here it records file and line only;
    * for every inlined call of a ``ti.func`` it reads and tokenises the function's source file again,
      and re-wraps each line; here each function's source is read and normalised once per process;
    * every ``ti.Vector.zero`` / ``ti.Matrix.zero`` is a Taichi function whose entries it transforms one
      by one; here the same matrix is built in plain Python (:func:`_lean_filled`);
    * every integer constant looks its type's range up twice with ``np.iinfo``; here once per type.

    Other kernels (the user's) compile as Taichi does it.  A user's kernel compiled on another thread while
    this holds would get the short messages; Taichi's front end does not support two kernels compiling at
    once anyway."""
    if _FRONT_END is None:
        yield
        return
    _set_front_end(True)
    try:
        yield
    finally:
        _set_front_end(False)


def lane(vector, index: int):
    """Element ``index`` of a Taichi vector expression, for plain Python helpers that kernels evaluate at
    compile time (in ``ti.static``): the expression Taichi's front end builds for ``vector[index]``.  On
    taichi 1.7 it is built directly (the index's constant, one subscript expression), without the
    general subscript's dispatch on every kind of indexed value, which was most of its time; the row
    kernels take a few thousand lanes each."""
    impl = ti.lang.impl
    expr = None if _FRONT_END is None else _FRONT_END[2]
    if expr is None or not isinstance(vector, expr.Expr):
        return impl.subscript(None, vector, index)
    runtime = impl.get_runtime()
    indices = ti._lib.core.ExprGroup()
    indices.push_back(expr.make_constant_expr(index, None).ptr)
    debug = ti._lib.core.DebugInfo(runtime.get_current_src_info())
    return expr.Expr(runtime.compiling_callable.ast_builder().expr_subscript(vector.ptr, indices, debug))


def struct(struct_type, **fields):
    """A value of the Taichi struct type ``struct_type``, for a kernel argument.  Built under :data:`LOCK`:
    Taichi's flag for "inside a kernel" is process-wide, and while another thread compiles a kernel a
    struct built here would come out as an expression of that kernel."""
    with LOCK:
        return struct_type(**fields)


def sync() -> None:
    """Wait for the Taichi work launched so far (``ti.sync()`` under :data:`LOCK`)."""
    with LOCK:
        ti.sync()


def is_initialised() -> bool:
    """True when a Taichi runtime exists (started by the user or by this package)."""
    return _started(ti)


def current_arch_name() -> str | None:
    """Name of the running Taichi backend (``"x64"``, ``"cuda"``, ``"vulkan"``...), or None."""
    if not is_initialised():
        return None
    return ti.lang.impl.current_cfg().arch.name


def _arch_from_name(name: str):
    name = name.strip().lower()
    if name not in _ARCH_NAMES:
        raise ValueError(f"arch must be one of {', '.join(_ARCH_NAMES)}, got {name!r}")
    return getattr(ti, name)


def init(arch: str = "cpu", pin_threads: bool = False, **taichi_options) -> None:
    """Start the Taichi runtime explicitly on ``arch`` (one of ``cpu``, ``cuda``, ``vulkan``,
    ``metal``, ``opengl``, ``gpu``), silently.  Extra keyword arguments go to ``ti.init``.

    ``pin_threads`` (Linux, CPU backend): pin Taichi's worker threads one per CPU of the process's
    affinity set, so that the OS cannot put two of them on one CPU while another idles (a scheduler
    that packs threads onto few CPUs halved the row kernels' speed on the development machine, see
    the README).  Off by default: on a machine shared by several such processes it would stack
    their workers on the same CPUs.

    Calling it again restarts Taichi (all Taichi state, the user's included, is reset).
    """
    with LOCK:
        _start(_arch_from_name(arch), taichi_options, pin_threads)


def _thread_ids() -> set[int]:
    """This process's thread ids (empty where ``/proc`` is not there)."""
    try:
        return {int(tid) for tid in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def _pin_workers(started: set[int], workers: int) -> None:
    """Pin Taichi's CPU worker threads, one per CPU of the process's affinity set.  They are the last
    ``workers`` of the threads ``ti.init`` started (Taichi 1.7 starts its thread pool last, its threads
    in a row); the others (its compile threads) are left as they are."""
    if not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    for i, tid in enumerate(sorted(started)[-workers:]):
        try:
            os.sched_setaffinity(tid, {cpus[i % len(cpus)]})
        except OSError:  # the thread is gone, or pinning is not allowed here: leave it unpinned
            pass


def _start(arch, taichi_options: dict, pin_threads: bool = False) -> None:
    """``ti.init`` with this package's options, silently, then the root struct built on this thread
    (:func:`_materialise`).  Called with :data:`LOCK` held."""
    # a bad CORR_TAICHI_PIN_THREADS is refused before Taichi restarts
    pin = arch == ti.cpu and (_pinning_requested() or pin_threads)
    options = dict(
        log_level="error",
        offline_cache=True,
        cpu_max_num_threads=max(1, torch.get_num_threads()),
        # Taichi's kernels here only touch torch-owned memory: keep its own device pool small so
        # it does not eat into what torch's allocator needs.
        device_memory_GB=0.25,
    )
    if arch == ti.cpu:
        # The CPU kernels compute on vectors of channels held in Taichi matrices; unscalarised, LLVM
        # receives them as vector types and emits full-width SIMD (several times faster).
        options["real_matrix_scalarize"] = False
    options.update(taichi_options)
    previous_skip = os.environ.get("TI_SKIP_VERSION_CHECK")
    os.environ["TI_SKIP_VERSION_CHECK"] = "ON"  # no network look-up behind the user's back
    before = _thread_ids()
    global _STARTING
    _STARTING = True
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ti.init(arch=arch, **options)
        _materialise()
    finally:
        _STARTING = False
        if previous_skip is None:
            del os.environ["TI_SKIP_VERSION_CHECK"]
        else:
            os.environ["TI_SKIP_VERSION_CHECK"] = previous_skip
    if pin:
        _pin_workers(_thread_ids() - before, options["cpu_max_num_threads"])


def _pinning_requested() -> bool:
    """The ``CORR_TAICHI_PIN_THREADS`` environment variable: ``1`` pins, ``0`` or unset does not."""
    value = os.environ.get("CORR_TAICHI_PIN_THREADS", "0").strip()
    if value not in ("0", "1", ""):
        raise ValueError(f"CORR_TAICHI_PIN_THREADS must be 0 or 1, got {value!r}")
    return value == "1"


def _materialise() -> None:
    """Build Taichi's root struct module now, if no kernel has run yet.  Taichi does this at the first
    kernel launch, and its LLVM backends (CPU, CUDA) allow it only on the thread that called
    ``ti.init``: a first launch from another thread fails.  Called with :data:`LOCK` held."""
    runtime = ti.lang.impl.get_runtime()
    if not runtime.materialized:
        runtime.materialize()


def _materialised() -> bool:
    return ti.lang.impl.get_runtime().materialized


# Taichi's runtime cannot be used in a process forked after it started (its worker threads do not
# exist in the child, and Taichi allows one runtime per process): such a child computes with the
# pure-PyTorch implementation instead of hanging.  The same holds for a child forked while another
# thread was starting the runtime.
_FORKED_AFTER_START = False
_STARTING = False


def _after_fork_in_child() -> None:
    global _FORKED_AFTER_START, LOCK
    _FORKED_AFTER_START = _FORKED_AFTER_START or _STARTING or is_initialised()
    # the parent's lock may have been held by one of its other threads, which do not exist here
    LOCK = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def usable() -> bool:
    """False in a process forked after the Taichi runtime started (see above)."""
    return not _FORKED_AFTER_START


def ensure_runtime(device: torch.device) -> None:
    """Make sure a Taichi runtime exists, ready for kernel launches from any thread, before a launch on
    tensors of ``device``."""
    if is_initialised() and _materialised():
        return
    with LOCK:
        if is_initialised():
            _materialise_user_runtime()
            return
        requested = os.environ.get("CORR_TAICHI_ARCH")
        if requested:
            arch = _arch_from_name(requested)
        elif device.type == "cuda":
            arch = ti.cuda
        else:
            arch = ti.cpu
        _start(arch, {})


def _materialise_user_runtime() -> None:
    """:func:`_materialise` for a runtime the user started with ``ti.init`` and has not launched a kernel
    on yet.  This works on the thread that called ``ti.init``; elsewhere Taichi refuses, with an
    assertion, and the error says what to do."""
    try:
        _materialise()
    except RuntimeError as error:
        raise RuntimeError(
            "corr_taichi: the Taichi runtime was started with ti.init() on another thread and has not run a "
            "kernel yet; Taichi's CPU and CUDA backends must run their first kernel on the thread that called "
            "ti.init(). Make one call of the layer (or ti.sync()) on that thread first, or let corr_taichi "
            "start the runtime itself (corr_taichi.init(...) instead of ti.init(...))"
        ) from error
