"""ONNX Runtime sessions (the rembg ``sessions`` pattern): execution providers
resolved once from a device, inputs checked before ONNX Runtime sees them."""
from __future__ import annotations

import functools
import logging
import numbers
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ModelError
from .files import (external_data_refusal, onnx_external_data, read_description, read_onnx_description,
                    read_verified_bytes)
from .tensors import (_ORT_DTYPES, _TensorInfo, _input_spec, check_description_io, check_feed, check_io,
                      normalise_images)

log = logging.getLogger("avatarizer.models")

DEVICES = ("auto", "cpu", "cuda")
#: ``device="auto"`` takes the first of these that this onnxruntime build offers.
AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(device: str = "auto", available: Sequence[str] | None = None,
                      gpu: tuple[bool, str] | None = None, trt: tuple[bool, str] | None = None) -> list[str]:
    """Execution providers for ``device``, resolved once.

    * ``"cpu"``: ``["CPUExecutionProvider"]``.
    * ``"cuda"``: CUDA, then CPU for any operator CUDA lacks; a ``RuntimeError``
      when this onnxruntime has no CUDA provider (install ``avatarizer[gpu]``)
      or the NVIDIA driver reports no CUDA device.
    * ``"auto"``: TensorRT EP > CUDA EP > CPU, all that this onnxruntime offers,
      in that order, the GPU ones only when the driver reports a CUDA device
      (``onnxruntime-gpu`` lists them on any machine; its sessions then fall
      back to the CPU, and the device and precision chosen for a GPU were
      wrong), and the TensorRT EP only when TensorRT's libraries load (it is
      listed without them too, and each session then prints an "EP Error"
      and retries without it). Note that the TensorRT EP compiles an engine the first time a
      session is made (seconds to minutes; cached, see :data:`TRT_CACHE_DIR`).

    ``gpu``: ``(present, why)`` as :func:`avatarizer.runtime.tensorrt.cuda_status`
    gives it (asked of the driver when None and a GPU provider is listed);
    ``trt``: as :func:`avatarizer.runtime.tensorrt.tensorrt_ep_status` gives it
    (asked when None and ``"auto"`` would take the TensorRT EP).
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    available = list(available) if available is not None else available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    gpu_listed = [p for p in AUTO_ORDER if p in available and p != "CPUExecutionProvider"]
    if gpu_listed and gpu is None:
        from .tensorrt import cuda_status

        gpu = cuda_status()
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(_no_cuda_message(available))
        if not gpu[0]:
            raise RuntimeError(f"device='cuda' was asked for, and this onnxruntime has the CUDA provider, but "
                               f"there is no usable GPU: {gpu[1]}; use device='auto' or 'cpu'")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = gpu_listed if gpu_listed and gpu[0] else []
    if "TensorrtExecutionProvider" in chosen:
        if trt is None:
            from .tensorrt import tensorrt_ep_status

            trt = tensorrt_ep_status()
        if not trt[0]:
            log.info("device='auto' leaves out the TensorRT execution provider: %s", trt[1])
            chosen.remove("TensorrtExecutionProvider")
    return chosen + ["CPUExecutionProvider"]


def _no_cuda_message(available: Sequence[str]) -> str:
    try:
        from importlib.metadata import version

        dist = next(d for d in ("onnxruntime-gpu", "onnxruntime") if _has_dist(d))
        which = f"{dist} {version(dist)}"
    except Exception:  # pragma: no cover - metadata missing
        which = "this onnxruntime"
    return (f"device='cuda' was asked for, but {which} has no CUDAExecutionProvider "
            f"(available: {list(available)}); install the GPU build with "
            "pip install 'avatarizer[gpu]' (onnxruntime-gpu) on a machine with an NVIDIA GPU, "
            "or use device='cpu'")


@functools.lru_cache(maxsize=None)  # once per process (two threads' first calls both preloading is harmless)
def preload_gpu_libraries() -> str:
    """Loads the CUDA and cuDNN libraries that ``onnxruntime-gpu`` needs from
    NVIDIA's pip packages (``nvidia-*-cu12``/``-cu13``, as ``pip install
    onnxruntime-gpu[cuda,cudnn]`` or PyTorch bring them), through
    ``onnxruntime.preload_dlls()`` (ONNX Runtime >= 1.21), once per process,
    when such packages are installed (otherwise the loader's own search finds
    system libraries, and there is nothing to preload).

    Without this the CUDA provider finds only libraries on the system's
    loader path, and ONNX Runtime quietly falls back to the CPU when they are
    elsewhere. Libraries already loaded (by PyTorch, say) are left alone.
    ONNX Runtime prints (on stdout) what it could not load; nothing else is
    printed. Returns why nothing was preloaded, or ``""``."""
    import importlib.util

    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    try:
        pip_cuda = importlib.util.find_spec("nvidia") is not None
    except (ImportError, ValueError):
        pip_cuda = False
    if preload is None:
        said = f"onnxruntime {getattr(ort, '__version__', '?')} has no preload_dlls (needs >= 1.21)"
    elif not pip_cuda:
        said = "no NVIDIA pip packages (nvidia-*): the loader's own search finds CUDA and cuDNN"
    else:
        # (its prints are left alone: capturing them would swap sys.stdout for every thread)
        try:
            preload(cuda=True, cudnn=True, msvc=False)
            said = ""
        except Exception as exc:  # the session says more if the provider then cannot load
            said = f"onnxruntime.preload_dlls failed: {exc!r}"
    if said:
        log.debug("preloading CUDA/cuDNN for onnxruntime: %s", said)
    return said


def _has_dist(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(name)
        return True
    except PackageNotFoundError:
        return False


#: ONNX Runtime's words for running out of memory (its CPU allocator's "Failed to allocate memory",
#: C++'s bad_alloc, CUDA's "out of memory"), not any message that names a node "reallocate_..." (a review)
_OUT_OF_MEMORY = re.compile(r"failed to allocate memory|bad[ _]alloc|out of memory", re.IGNORECASE)


def _cache_parent() -> Path:
    """``$AVATARIZER_CACHE``, else ``~/.cache/avatarizer``, else (no home
    directory: a container's user without a passwd entry or ``HOME``) a
    folder of this user's in the temporary folder. The home was asked for
    even with ``AVATARIZER_CACHE`` set, and without one ``import
    avatarizer.runtime`` (every ``Avatarizer()`` with models) raised
    "Could not determine home directory" (a review, session 72)."""
    env = os.environ.get("AVATARIZER_CACHE")
    if env:
        return Path(env)
    try:
        return Path.home() / ".cache" / "avatarizer"
    except (RuntimeError, KeyError):  # (KeyError: Python before 3.12 where the passwd lookup fails)
        return Path(tempfile.gettempdir()) / f"avatarizer-cache-{os.getuid() if hasattr(os, 'getuid') else 0}"


def _private_cache(folder: Path) -> bool:
    """Whether the engine cache ``folder`` may be used: always where it is not
    the temporary folder's fallback (:func:`_cache_parent`; the home's, or
    one ``AVATARIZER_CACHE`` names elsewhere); the fallback (judged by its
    place, also when ``AVATARIZER_CACHE`` names it) only where its parent is a
    folder, not a link, this user owns and no one else may write to
    (another user could have made it first, or a link of its name, and
    handed this one engines of theirs; reviews, session 72)."""
    parent = folder.parent
    if not parent.name.startswith("avatarizer-cache-") or parent.parent != Path(tempfile.gettempdir()):
        return True
    try:
        st = os.lstat(parent)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            return False
        if st.st_mode & 0o022:
            os.chmod(parent, 0o700)  # (this user's own folder, not a link, too open: closed)
            st = os.lstat(parent)
        sub = os.lstat(folder) if os.path.lexists(folder) else None
        return not st.st_mode & 0o022 and (sub is None or (stat.S_ISDIR(sub.st_mode) and sub.st_uid == os.getuid()))
    except (OSError, AttributeError, NotImplementedError):
        return False


#: Where the TensorRT execution provider caches its engines (``AVATARIZER_CACHE``
#: overrides the parent folder).
TRT_CACHE_DIR = _cache_parent() / "ort-trt"


def _provider_entries(providers: Sequence[Any]) -> tuple[list[str], list[dict]]:
    """(names, options) of a ``providers`` list; ``ValueError`` for a string
    (it would be read letter by letter), an empty list, a malformed entry or
    a name this onnxruntime does not have (ONNX Runtime itself only prints a
    banner and runs on the CPU)."""
    if isinstance(providers, (str, bytes)) or not isinstance(providers, Sequence) or not providers:
        raise ValueError(f"providers must be a non-empty list of provider names or (name, options) pairs, "
                         f"got {providers!r:.80}")
    names, options = [], []
    for p in providers:
        if isinstance(p, (tuple, list)) and (len(p) != 2 or not isinstance(p[0], str) or not isinstance(p[1], Mapping)):
            raise ValueError(f"a provider with options is a (name, dict) pair, got {p!r:.80}")
        if not isinstance(p, (tuple, list, str)):
            raise ValueError(f"a provider is a name or a (name, dict) pair, got {p!r:.80}")
        if isinstance(p, (tuple, list)):
            names.append(str(p[0]))
            options.append(dict(p[1]))
        else:
            names.append(str(p))
            options.append({})
    for i, n in enumerate(names):
        if n == "TensorrtExecutionProvider" and not options[i]:
            # ORT's TensorRT EP takes boolean options as the strings "True"/"False".
            try:
                TRT_CACHE_DIR.mkdir(parents=True, exist_ok=True)
                if _private_cache(TRT_CACHE_DIR):
                    options[i] = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(TRT_CACHE_DIR)}
            except OSError:
                pass  # no writable cache: the EP builds its engine at every start
    return names, options


def _thread_count(name: str, n: Any) -> int:
    """A thread-count option as an int; ``ValueError`` (the SDK's type for bad
    options) for anything but an integer from 0 (ONNX Runtime chooses) to 2**31 - 1."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 0 <= n <= 2 ** 31 - 1:
        raise ValueError(f"{name} must be an integer >= 0 (0 lets ONNX Runtime choose), not {n!r:.40}")
    return int(n)


class Session:
    """One ONNX Runtime model, ready to run.

    ``device`` is ``"auto"``, ``"cpu"`` or ``"cuda"`` (see
    :func:`resolve_providers`); ``providers`` (names, or ``(name, options)``
    pairs) overrides it. :attr:`providers` lists what ONNX Runtime actually
    uses; a ``"cuda"`` request that ONNX Runtime quietly served with the CPU
    (for example CUDA libraries missing) raises ``RuntimeError`` instead of
    running slowly without a word.

    ``intra_op_num_threads`` defaults to 1: the SDK runs one session per
    worker thread (as OpenSeeFace does) and each real-time stage is small, so
    one thread per session gives the steadiest latency and leaves cores for the
    other stages and threads. Pass 0 to let ONNX Runtime use every core (best
    for one big batch on an otherwise idle machine).
    """

    def __init__(self, path: str | os.PathLike, *, name: str | None = None, device: str = "auto",
                 providers: Sequence[Any] | None = None, intra_op_num_threads: int = 1,
                 inter_op_num_threads: int = 1, description: Mapping[str, Any] | None = None,
                 optimization: str = "all", model_bytes: bytes | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if description is None and model_bytes is not None:
            try:
                description = read_onnx_description(model_bytes)
            except ValueError:
                description = {}
        if description is None:
            try:
                description = read_description(self.path)
            except (OSError, ValueError):
                description = {}
        self.description = dict(description)
        self._normalisations: dict[str, Mapping[str, Any]] = {}  # per input, checked once (preprocess)
        self.name = name or self.description.get("name") or self.path.stem
        intra_op_num_threads = _thread_count("intra_op_num_threads", intra_op_num_threads)
        inter_op_num_threads = _thread_count("inter_op_num_threads", inter_op_num_threads)
        self.device = device
        requested = providers if providers is not None else resolve_providers(device)
        names, options = _provider_entries(requested)
        unknown = [n for n in names if n not in available_providers()]
        if unknown:
            raise ValueError(f"provider(s) {unknown} are not in this onnxruntime (it has {available_providers()})")
        if device == "auto" and providers is not None and "CUDAExecutionProvider" in names:
            device = "cuda"  # asked for by name: a quiet fall back to the CPU is an error, as for device='cuda'
        self.requested_providers = names
        if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(names):
            preload_gpu_libraries()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_num_threads
        opts.inter_op_num_threads = inter_op_num_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only: ONNX Runtime's warnings (memcpy nodes added...) are not the app's
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        if optimization not in levels:
            raise ValueError(f"optimization must be one of {sorted(levels)}, not {optimization!r}")
        opts.graph_optimization_level = levels[optimization]
        self.intra_op_num_threads = intra_op_num_threads
        if model_bytes is not None:
            # from memory ONNX Runtime would look for external data beside the current directory
            try:
                external = onnx_external_data(model_bytes)
            except ValueError as exc:
                raise ModelError(f"{self.path}: {exc}") from None
            if external:
                raise ModelError(f"{self.path}: model {self.name!r} {external_data_refusal(external)}")
        try:
            source = model_bytes if model_bytes is not None else str(self.path)
            self._sess = ort.InferenceSession(source, sess_options=opts, providers=names,
                                              provider_options=options)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelError(f"{self.path}: ONNX Runtime could not load model {self.name!r}: "
                             f"{exc}") from exc
        self.providers: list[str] = list(self._sess.get_providers())
        if device == "cuda" and "CUDAExecutionProvider" in names and "CUDAExecutionProvider" not in self.providers:
            raise RuntimeError(f"model {self.name!r}: device='cuda' was asked for, but ONNX Runtime "
                               f"fell back to {self.providers} (CUDA/cuDNN libraries missing or no "
                               "GPU visible?)")
        if device == "auto" and providers is None:
            log.info("model %s: device='auto' uses %s (order: TensorRT EP > CUDA EP > CPU)",
                     self.name, self.providers)
        self.inputs = [_TensorInfo(i.name, tuple(i.shape), _ORT_DTYPES.get(i.type), i.type)
                       for i in self._sess.get_inputs()]
        self.outputs = [_TensorInfo(o.name, tuple(o.shape), _ORT_DTYPES.get(o.type), o.type)
                        for o in self._sess.get_outputs()]
        self.input_names = [i.name for i in self.inputs]
        self.output_names = [o.name for o in self.outputs]

    @classmethod
    def from_entry(cls, entry, **options: Any) -> "Session":
        """A session on exactly the bytes the manifest verified: the file is read
        once, hashed again and handed to ONNX Runtime from memory (a file
        swapped after :meth:`Manifest.load` is refused with
        :class:`ModelError`); the model's inputs and outputs must be the ones
        the manifest lists, and so must its embedded description's."""
        data = read_verified_bytes(entry.path, entry.sha256)
        sess = cls(entry.path, name=entry.name, description=entry.description, model_bytes=data, **options)
        check_io(entry, sess.inputs, sess.outputs)
        check_description_io(entry)
        return sess

    @property
    def precision(self) -> str | None:
        return self.description.get("precision")

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Runs the model on a dict of arrays; returns a dict of output arrays.

        Every model input must be given, with the model's dtype and a shape
        that matches its fixed dimensions; otherwise ``ValueError`` names the
        model and the expected shape. A model that fails while it runs (ONNX
        Runtime's own error), or returns an output whose shape does not match
        the dimensions it declares, is a broken model file:
        :class:`ModelError` (ONNX Runtime's exceptions, which are neither
        ``ValueError`` nor ``RuntimeError``, reached the app, and an
        attribute model that declared 5 hair colours and returned 2 failed
        deep in the decoding or drew what was left; a review, session 72);
        one that runs out of memory is a ``MemoryError``.
        """
        feed = check_feed(self.name, self.inputs, inputs)
        try:
            outs = self._sess.run(self.output_names, feed)
        except Exception as exc:
            if not type(exc).__module__.startswith("onnxruntime"):
                raise
            text = " ".join(str(exc).split())[:500]
            if _OUT_OF_MEMORY.search(text):  # (not the file's fault)
                raise MemoryError(f"model {self.name!r} ran out of memory while running: {text}") from None
            raise ModelError(f"model {self.name!r} ({self.path}) failed while running: {text}: the model file "
                             "is broken or does not suit this ONNX Runtime (re-export it)") from None
        for info, y in zip(self.outputs, outs):
            # (a tensor output whose rank the file declares; ONNX Runtime lists one of unknown rank, and a
            # sequence's or a map's, with the shape (), so those are not checked: a review, session 72)
            if not info.shape or not info.type_name.startswith("tensor("):
                continue
            shape = np.shape(y)
            if not info.fits(shape):
                raise ModelError(f"model {self.name!r} ({self.path}) returned {info.name!r} of shape "
                                 f"{tuple(shape)} where it declares {info.describe()}: the model file is broken "
                                 "(re-export it)")
        return dict(zip(self.output_names, outs))

    __call__ = run

    def preprocess(self, images: np.ndarray, input_name: str | None = None) -> np.ndarray:
        """uint8 RGB crop(s) (H×W×3 or N×H×W×3) → the normalised N×3×H×W float32 input,
        following the ``normalisation`` in the model's embedded description."""
        name = input_name or self.input_names[0]
        norm = self._normalisations.get(name)
        if norm is None:  # (the description does not change: its checks run on the first frame only)
            norm = self._normalisations[name] = _input_spec(self.description, name).get("normalisation") or {}
        return normalise_images(images, norm)

    def __repr__(self) -> str:
        return (f"Session({self.name!r}, precision={self.precision!r}, providers={self.providers}, "
                f"inputs={[(i.name, i.shape) for i in self.inputs]})")
